"""The web page in headless Chromium against the real server (the test release of test_serving_api.py): search,
"more like this", a user's recommendations and history, an error shown on the page. Nothing is played.

Needs Debian's chromium (`apt-get install chromium`; never `playwright install`) and the playwright Python
package; skipped otherwise. Screenshots go to pytest's tmp folder; set `MUSICREC_UI_SCREENSHOTS=1` to also copy
them to storage/reports/serving_*.png.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from test_serving_api import HISTORIES, RECOMMENDATIONS, publish_test_release, running_server

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _skip_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}: install Debian's `chromium` (apt-get install -y chromium); " \
               "never `playwright install`"
    return None


SKIP_REASON = _skip_reason()
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:Trying to estimate tuning:UserWarning"),
              pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, dict]]:
    release = publish_test_release(tmp_path_factory.mktemp("serving_page"))
    with running_server(release["storage"], release["folder"] / "server.log") as base:
        yield base, release


def test_search_more_like_this_and_user(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, release = served
    expect.set_options(timeout=60_000)  # the first search loads the text model in the server: slow on 2 cores
    similar = release["tables"]["similar_tracks"]
    shots: dict[str, Path] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/", wait_until="domcontentloaded")
            expect(page.locator("#release")).to_contain_text(release["name"])

            page.fill("#q", "calm piano music")
            page.press("#q", "Enter")
            results = page.locator("#results > li.track")
            expect(results.first).to_be_visible()
            first = results.first
            expect(first.locator(".title")).to_have_text("Quiet Keys")
            expect(first.locator(".artist")).to_have_text("Ada")
            expect(first.locator(".tag")).to_have_text(["piano", "calm", "slow"])
            assert float(first.locator(".score").inner_text()) > 0
            player = first.locator("audio")
            assert player.get_attribute("preload") == "none"
            assert player.get_attribute("src") == "/audio/wav/t01.wav"
            assert player.evaluate("a => a.paused")
            shots["search"] = tmp_path / "serving_search.png"
            page.screenshot(path=str(shots["search"]), full_page=True)

            first.get_by_role("button", name="more like this").click()
            expect(page.locator("#results-title")).to_contain_text("More like “Quiet Keys”")
            expected = similar.filter(pl.col("track_id") == "t01").sort("rank")["similar_id"].to_list()
            expect(results).to_have_count(len(expected))
            assert [results.nth(i).get_attribute("data-track-id") for i in range(len(expected))] == expected
            shots["similar"] = tmp_path / "serving_similar.png"
            page.screenshot(path=str(shots["similar"]), full_page=True)

            expect(page.locator("#user-ids option")).to_have_count(len(HISTORIES))
            page.fill("#user", "u1")
            page.press("#user", "Enter")
            expect(page.locator("#user-panel")).to_be_visible()
            expect(page.locator("#recommendations-title")).to_have_text("Recommendations for u1")
            recommended = page.locator("#recommendations > li.track")
            expect(recommended).to_have_count(len(RECOMMENDATIONS["u1"]))
            assert [recommended.nth(i).get_attribute("data-track-id")
                    for i in range(len(RECOMMENDATIONS["u1"]))] == RECOMMENDATIONS["u1"]
            played = page.locator("#history > li.track")
            expect(played).to_have_count(len(HISTORIES["u1"]))
            assert [played.nth(i).get_attribute("data-track-id")
                    for i in range(len(HISTORIES["u1"]))] == HISTORIES["u1"]
            expect(page.locator("#error")).to_be_hidden()
            shots["user"] = tmp_path / "serving_user.png"
            page.screenshot(path=str(shots["user"]), full_page=True)

            page.fill("#user", "u11")
            page.press("#user", "Enter")
            expect(page.locator("#error")).to_be_visible()
            expect(page.locator("#error")).to_contain_text("unknown user 'u11'; closest known: u1")
            expect(page.locator("#user-panel")).to_be_hidden()  # no stale lists under another user's name
            shots["error"] = tmp_path / "serving_error.png"
            page.screenshot(path=str(shots["error"]), full_page=True)
        finally:
            browser.close()

    for path in shots.values():
        assert path.stat().st_size > 10_000, f"{path} looks empty"
    if os.environ.get("MUSICREC_UI_SCREENSHOTS"):
        reports = REPO_ROOT / "storage" / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        for path in shots.values():
            shutil.copy(path, reports / path.name)
