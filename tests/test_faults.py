"""Fault injection: a run killed while ingesting, embedding or writing its report, a full disk, a flaky disk,
corrupt tables in storage and two runs at once lose nothing, leave nothing partial, and recompute nothing that
was complete. (A run killed while training, holding the gpu slot, is in test_recovery.py.)

The kills at ingest and report are placed exactly, not timed: a plugin module (the experiment file's
`plugins`) wraps one function of the pipeline so that the run's process sends itself SIGKILL there."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from conftest import REPO_ROOT, make_folder_catalog, write_tone

import assets.retries
import catalog.io
from assets.checks import build_embedding_check
from assets.experiment import load_experiment
from assets.resources import StorageResource
from embedders.runner import embedding_files, read_backbone
from pipelines.run import instance_for, run_experiment

pytestmark = pytest.mark.slow


def experiment_file(tmp_path: Path, batches: int = 2, seconds: float = 1.5) -> Path:
    """A tone folder catalog (`batches` batch folders), random + handcrafted, knn + popularity."""
    interactions = make_folder_catalog(tmp_path / "music")
    for b in range(2, batches):
        for i in range(2):
            write_tone(tmp_path / "music" / f"b{b:03d}" / f"tone{i}.wav", 200.0 + 50 * b + 800 * i, seconds)
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump({
        "name": "faults", "storage": str(tmp_path / "out"),
        "catalog": {"kind": "folder", "folder": str(tmp_path / "music"), "interactions": str(interactions)},
        "backbones": {"random": {"dim": 8}, "handcrafted": {}}, "recommenders": {"knn": {}},
        "baselines": ["popularity"]}))
    return path


def no_partial_files(root: Path) -> list[Path]:
    """Temporary files an interrupted atomic write would have left (there must be none)."""
    return [p for p in root.rglob("*.tmp")]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without MUSICREC_/DAGSTER_ variables, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("MUSICREC_", "DAGSTER_"))}, **extra}


def run_in_storage_instance(path: Path) -> set[str]:
    """`run_experiment` on the Dagster instance the CLI uses (`<storage>/dagster`); the asset keys it
    materialised."""
    experiment = load_experiment(path)
    try:
        keys = run_experiment(experiment, instance_for(experiment), say=lambda _: None)
    finally:
        os.environ.pop("DAGSTER_HOME")
    return {key.to_user_string() for key in keys}


def killed_run(path: Path, tmp_path: Path, plugin: str) -> None:
    """`musicrec run` of `path` with a plugin whose code (`plugin`) kills the run; asserts it died by SIGKILL."""
    (tmp_path / "plugins").mkdir(exist_ok=True)
    (tmp_path / "plugins" / "kill_here.py").write_text("import os\nimport signal\n\n\n" + plugin)
    killer = path.with_name("killer.yaml")
    killer.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "plugins": ["kill_here"]}))
    victim = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", str(killer)], cwd=REPO_ROOT,
                            env=clean_env(PYTHONPATH=str(tmp_path / "plugins")), capture_output=True, timeout=600)
    assert victim.returncode == -signal.SIGKILL, victim.stderr.decode()[-2000:]


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_kill_while_ingesting_a_new_batch_keeps_the_catalog_and_redoes_only_the_new_batch(tmp_path):
    path = experiment_file(tmp_path)
    run_in_storage_instance(path)
    tables, embedded = tmp_path / "out" / "tables", tmp_path / "out" / "embeddings" / "handcrafted"
    tracks_before, embedded_before = (tables / "tracks.parquet").read_bytes(), mtimes(embedded)
    for i in range(3):
        write_tone(tmp_path / "music" / "b002" / f"tone{i}.wav", 300.0 + 200 * i)
    killed_run(path, tmp_path, """import catalog.ingest

real_probe = catalog.ingest.probe
decoded = []


def probe(path, known):
    found, was_decoded = real_probe(path, known)
    decoded.append(path) if was_decoded else None
    if len(decoded) == 2:  # the second new file of the batch
        os.kill(os.getpid(), signal.SIGKILL)
    return found, was_decoded


catalog.ingest.probe = probe
""")
    assert (tables / "tracks.parquet").read_bytes() == tracks_before  # the catalog is the last whole one
    assert no_partial_files(tmp_path / "out") == []

    rerun = run_in_storage_instance(path)
    assert "report" in rerun  # (the embed job ran first: catalog and embeddings)
    assert {p: m for p, m in mtimes(embedded).items() if p in embedded_before} == embedded_before  # not redone
    assert {f"b002/tone{i}" for i in range(3)} <= set(read_backbone(embedded).ids)
    assert no_partial_files(tmp_path / "out") == []


def test_kill_while_writing_the_report_loses_nothing_and_reruns_only_the_report(tmp_path):
    path = experiment_file(tmp_path)
    killed_run(path, tmp_path, """import contextlib

import assets.reports

real_atomic_path = assets.reports.atomic_path


@contextlib.contextmanager
def atomic_path(target, suffix=""):
    with real_atomic_path(target, suffix) as tmp:
        yield tmp
        if tmp.name.startswith(".report.md."):  # written whole, not yet renamed onto report.md
            os.kill(os.getpid(), signal.SIGKILL)


assets.reports.atomic_path = atomic_path
""")
    out = tmp_path / "out"
    assert not (out / "reports" / "report.md").exists() and (out / "tables" / "metrics.parquet").exists()
    orphans = no_partial_files(out)
    assert len(orphans) == 1 and orphans[0].name.startswith(".report.md.pid")
    models_before = mtimes(out / "models")

    rerun = run_in_storage_instance(path)
    assert "report" in rerun and not {k for k in rerun if not k.startswith(("report", "serving_"))}, rerun
    assert mtimes(out / "models") == models_before
    assert (out / "reports" / "report.md").exists() and no_partial_files(out) == []


def test_a_flaky_disk_retries_the_step_and_bad_input_is_never_retried(tmp_path, monkeypatch):
    monkeypatch.setattr(assets.retries, "STEP_RETRY_WAIT_S", 0.0)
    path = experiment_file(tmp_path)
    real_write, calls = catalog.io.pq.write_table, []

    def flaky(*args, **kwargs):  # the first three writes fail: the I/O tries of one write are spent
        calls.append(args[1])
        if len(calls) <= 3:
            raise OSError(errno.EIO, "Input/output error")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(catalog.io.pq, "write_table", flaky)
    instance = dg.DagsterInstance.ephemeral()
    run_experiment(load_experiment(path), instance, say=lambda _: None)
    events = [r.event_log_entry.dagster_event for r in instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.STEP_UP_FOR_RETRY))]
    assert len(events) == 1 and len(calls) > 3

    def bad_input(*args, **kwargs):
        raise ValueError("row 3: not a track")

    monkeypatch.setattr(catalog.io.pq, "write_table", bad_input)
    write_tone(tmp_path / "music" / "b002" / "tone0.wav", 330.0)
    with pytest.raises(RuntimeError, match="row 3: not a track"):
        run_experiment(load_experiment(path), instance, say=lambda _: None)
    assert len(instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.STEP_UP_FOR_RETRY))) == 1  # no new retry


def test_kill_while_embedding_loses_nothing_and_redoes_only_unfinished_batches(tmp_path):
    path = experiment_file(tmp_path, batches=14, seconds=6.0)
    victim = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(path)], cwd=REPO_ROOT, env=clean_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / "out" / "embeddings" / "handcrafted"
    deadline = time.monotonic() + 300
    while len(embedding_files(folder) if folder.exists() else []) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    done = {p.name: p.stat().st_mtime_ns for p in embedding_files(folder)}
    assert 2 <= len(done) < 14, f"killed too late or too early: {sorted(done)}"
    assert no_partial_files(tmp_path / "out") == []
    written = {track.split("/")[0] for track in read_backbone(folder).ids}  # every file so far reads whole
    assert written == {name.removesuffix(".parquet") for name in done}

    run_in_storage_instance(path)
    after = {p.name: p.stat().st_mtime_ns for p in embedding_files(folder)}
    assert len(after) == 14 and all(after[name] == mtime for name, mtime in done.items())  # not recomputed
    assert (tmp_path / "out" / "reports" / "report.md").exists() and no_partial_files(tmp_path / "out") == []


def test_a_full_disk_fails_the_step_clearly_and_keeps_the_previous_table(tmp_path, monkeypatch):
    path = experiment_file(tmp_path)
    experiment = load_experiment(path)
    instance = dg.DagsterInstance.ephemeral()
    run_experiment(experiment, instance, say=lambda _: None)
    metrics = tmp_path / "out" / "tables" / "metrics.parquet"
    before = pl.read_parquet(metrics)
    write_tone(tmp_path / "music" / "b002" / "tone0.wav", 330.0)  # new work that must write tables

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(catalog.io.pq, "write_table", disk_full)
    with pytest.raises(RuntimeError, match=r"the disk is full \(No space left on device\); nothing was written, the "
                                           r"previous file \(if any\) is intact"):
        run_experiment(experiment, instance, say=lambda _: None)
    assert pl.read_parquet(metrics).equals(before) and no_partial_files(tmp_path / "out") == []
    monkeypatch.undo()
    run_experiment(experiment, instance, say=lambda _: None)  # space freed: the run completes
    assert "b002/tone0" in read_backbone(tmp_path / "out" / "embeddings" / "handcrafted").ids


def test_corrupt_tables_are_detected_and_rebuilt(tmp_path):
    path = experiment_file(tmp_path)
    experiment = load_experiment(path)
    instance = dg.DagsterInstance.ephemeral()
    run_experiment(experiment, instance, say=lambda _: None)
    embedded = tmp_path / "out" / "embeddings" / "handcrafted" / "b000.parquet"
    metrics = tmp_path / "out" / "tables" / "metrics.parquet"
    good_metrics = pl.read_parquet(metrics)
    embedded.write_bytes(b"PAR1 not really")
    metrics.write_bytes(embedded.read_bytes()[:8])

    check = build_embedding_check("handcrafted")
    verdict = check(dg.build_asset_check_context(resources={"storage": StorageResource(root=str(tmp_path / "out"))}),
                    pl.read_parquet(tmp_path / "out" / "tables" / "tracks.parquet"))
    assert not verdict.passed and "unreadable table(s) ['b000.parquet']" in verdict.description
    rebuilt = run_experiment(experiment, instance, say=lambda _: None)
    assert {key.to_user_string() for key in rebuilt} == {"metrics", "report"}  # and nothing that was whole
    assert pl.read_parquet(metrics).equals(good_metrics)
    assert len(read_backbone(embedded.parent).ids) == 12


def test_two_runs_at_once_do_not_corrupt_a_table(tmp_path):
    path = experiment_file(tmp_path, batches=4)
    script = ("import sys, dagster as dg; from assets.experiment import load_experiment; "
              "from pipelines.definitions import build_definitions; "
              "r = build_definitions(load_experiment(sys.argv[1])).resolve_job_def('embed')"
              ".execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False); "
              "sys.exit(0 if r.success else 1)")
    runs = [subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE) for _ in range(2)]
    assert [run.wait(timeout=300) for run in runs] == [0, 0], [run.stderr.read().decode()[-1500:] for run in runs]
    for table in ("random", "handcrafted"):
        assert len(read_backbone(tmp_path / "out" / "embeddings" / table).ids) == 16
    assert no_partial_files(tmp_path / "out") == []
