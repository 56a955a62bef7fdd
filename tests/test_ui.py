"""End to end through the web UI: `dagster dev` on a tiny demo catalog, the asset graph in headless Chromium,
and a materialisation (catalog tables + random embeddings) launched through the webserver's GraphQL API.

Needs Debian's chromium (`apt-get install chromium`; never `playwright install`) and the playwright Python
package; skipped otherwise. Screenshots go to pytest's tmp folder; set `MUSICREC_UI_SCREENSHOTS=1` to also
copy them to storage/reports/ui_*.png.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCATION = "pipelines.definitions"  # `dagster dev -m pipelines.definitions` names the code location after the module
CATALOG_ASSETS = ["tracks", "artists", "interactions", "artist_edges", "queries"]  # one multi-asset: all or none
SELECTION = [*CATALOG_ASSETS, "embeddings_random"]
SERVER_TIMEOUT_S = 180  # the code location imports torch & co.: slow on a loaded 2-core machine
RUN_TIMEOUT_S = 240

def _chromium() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def _skip_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install -e '.[dev]')"
    if _chromium() is None:
        return "no Chromium: install Debian's `chromium` (apt-get install -y chromium); never `playwright install`"
    if shutil.which("dagster", path=str(Path(sys.executable).parent)) is None and shutil.which("dagster") is None:
        return "the dagster CLI is not installed"
    return None


SKIP_REASON = _skip_reason()
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(base: str, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = json.loads(response.read())
    if body.get("errors"):
        raise AssertionError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def _wait_for_server(base: str, process: subprocess.Popen, log: Path) -> None:
    """Until /server_info answers and the code location has loaded (its repository is listed)."""
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dagster dev exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=5) as response:
                if response.status == 200:
                    data = _graphql(base, """{ workspaceOrError { ... on Workspace { locationEntries {
                        name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
                    entries = data["workspaceOrError"]["locationEntries"]
                    for entry in entries:
                        if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED":
                            error = entry["locationOrLoadError"]
                            if error and error["__typename"] == "PythonError":
                                raise AssertionError(f"code location failed to load: {error['message']}")
                            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(2)
    raise AssertionError(f"dagster dev did not serve {LOCATION} within {SERVER_TIMEOUT_S} s:\n{_tail(log)}")


def _stop_automation_sensor(base: str, repository: str) -> None:
    """The automation sensor is on by default; once the catalog exists it would start materialising the whole
    graph. Stop it, so the test runs exactly what it launches."""
    data = _graphql(base, """query($sel: RepositorySelector!) { sensorsOrError(repositorySelector: $sel) {
        __typename ... on Sensors { results { name jobOriginId sensorState { selectorId status } } }
        ... on PythonError { message } } }""",
                    {"sel": {"repositoryName": repository, "repositoryLocationName": LOCATION}})
    for sensor in data["sensorsOrError"]["results"]:
        if sensor["sensorState"]["status"] == "RUNNING":
            result = _graphql(base, """mutation($o: String, $s: String) {
                stopSensor(jobOriginId: $o, jobSelectorId: $s) {
                __typename ... on StopSensorMutationResult { instigationState { status } }
                ... on PythonError { message } } }""",
                              {"o": sensor["jobOriginId"], "s": sensor["sensorState"]["selectorId"]})
            assert result["stopSensor"]["__typename"] == "StopSensorMutationResult", (sensor["name"], result)


def _launch(base: str, repository: str) -> str:
    data = _graphql(base, """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
        ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message }
        ... on PipelineNotFoundError { message } } }""", {"p": {"selector": {
        "repositoryLocationName": LOCATION, "repositoryName": repository, "jobName": "embed",
        "assetSelection": [{"path": [name]} for name in SELECTION]}}})
    result = data["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def _wait_for_run(base: str, run_id: str, log: Path) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = "?"
    while time.monotonic() < deadline:
        data = _graphql(base, """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }""",
                        {"id": run_id})
        status = data["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(3)
    raise AssertionError(f"run {run_id} still {status} after {RUN_TIMEOUT_S} s:\n{_tail(log)}")


def _run_failure_messages(base: str, run_id: str) -> str:
    data = _graphql(base, """query($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection {
        events { __typename ... on MessageEvent { message }
        ... on ExecutionStepFailureEvent { error { message } } } } } }""",
                    {"id": run_id})
    events = data["logsForRun"].get("events", [])
    return "\n".join(json.dumps(e)[:800] for e in events if "Failure" in e["__typename"] or "Error" in e["__typename"])


@pytest.fixture()
def dagster_dev(tmp_path):
    """`dagster dev` on a free port showing experiments/demo.yaml on the tiny demo catalog with storage in
    tmp (an experiment file named by MUSICREC_EXPERIMENT); yields (base_url, log path)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    experiment = yaml.safe_load((REPO_ROOT / "experiments" / "demo.yaml").read_text())
    experiment.update(storage=str(tmp_path / "storage"), catalog={"kind": "demo", "size": "tiny"})
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(experiment))
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "MUSICREC_EXPERIMENT": str(tmp_path / "tiny.yaml"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "DAGSTER_DISABLE_TELEMETRY": "1"}
    dagster = str(Path(sys.executable).parent / "dagster")
    if not Path(dagster).exists():
        dagster = shutil.which("dagster")
    log = tmp_path / "dagster_dev.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [dagster, "dev", "-m", LOCATION, "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_server(base, process, log)
        yield base, log
    finally:
        # the whole process group: dagster dev, its webserver, daemon and code server
        for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait_s)
                # children may outlive the parent briefly: make sure the group is gone
                os.killpg(process.pid, 0)
                time.sleep(1)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue


def test_asset_graph_and_materialisation_through_the_ui(dagster_dev, tmp_path):
    from playwright.sync_api import sync_playwright

    base, log = dagster_dev
    assert _graphql(base, "mutation { setNuxSeen }")["setNuxSeen"] is True  # no first-run dialog over the page

    repos = _graphql(base, """{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name }
        pipelines { name } } } } }""")["repositoriesOrError"]["nodes"]
    repo = next(r for r in repos if r["location"]["name"] == LOCATION)
    assert {"experiment", "embed"} <= {p["name"] for p in repo["pipelines"]}
    _stop_automation_sensor(base, repo["name"])

    shots = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(90_000)

            # the global asset lineage: one (collapsed) node per asset group
            page.goto(f"{base}/asset-groups", wait_until="domcontentloaded")
            page.get_by_text("hot_start", exact=True).first.wait_for(state="visible")
            page.wait_for_timeout(1500)  # let the layout settle before the screenshot
            body = page.inner_text("body")
            for group in ("catalog", "embeddings", "hot_start", "reports"):
                assert group in body, f"asset group {group!r} not on the global lineage page"
            shots["asset_graph"] = tmp_path / "ui_asset_graph.png"
            page.screenshot(path=str(shots["asset_graph"]))

            # one group's lineage: the embedding assets the backbone factory made
            page.goto(f"{base}/locations/{LOCATION}/asset-groups/embeddings/lineage", wait_until="domcontentloaded")
            # which nodes the canvas shows depends on its layout; any asset key of the group means it has drawn
            page.get_by_text(re.compile(r"^(embeddings|tags)_")).first.wait_for(state="visible")
            page.wait_for_timeout(1500)
            shots["embeddings_group"] = tmp_path / "ui_embeddings_group.png"
            page.screenshot(path=str(shots["embeddings_group"]))
            # the lineage canvas draws only the nodes in view; the group's List tab names every asset
            page.get_by_text("List", exact=True).first.click()
            page.get_by_text("embeddings_random", exact=True).first.wait_for(state="visible")
            body = page.inner_text("body")
            for asset in ("embeddings_random", "embeddings_handcrafted", "embeddings_musicnn_mtt", "tags_musicnn_mtt"):
                assert asset in body, f"{asset!r} not in the embeddings group's asset list"
            shots["embeddings_list"] = tmp_path / "ui_embeddings_list.png"
            page.screenshot(path=str(shots["embeddings_list"]))

            run_id = _launch(base, repo["name"])
            status = _wait_for_run(base, run_id, log)
            assert status == "SUCCESS", f"run {run_id} ended {status}:\n{_run_failure_messages(base, run_id)}"

            page.goto(f"{base}/runs/{run_id}", wait_until="domcontentloaded")
            page.get_by_text("embeddings_random").first.wait_for(state="visible")
            page.get_by_text("Success").first.wait_for(state="visible")
            page.wait_for_timeout(1500)
            shots["run"] = tmp_path / "ui_run.png"
            page.screenshot(path=str(shots["run"]))
        finally:
            browser.close()

    for path in shots.values():
        assert path.stat().st_size > 10_000, f"{path} looks empty"
    if os.environ.get("MUSICREC_UI_SCREENSHOTS"):
        reports = REPO_ROOT / "storage" / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        for name, path in shots.items():
            shutil.copy(path, reports / f"ui_{name}.png")
