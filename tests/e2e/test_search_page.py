"""The Search page in a real browser: a finished tiny search (3 trials of 2 epochs on the wine sample)
shows its status, the best-score chart against the spec's own settings, the trials table and the chosen
model's link; a screenshot is kept in test-artifacts/screenshots/search_page.png."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.e2e


def test_the_search_page_shows_a_search(studio, page, screenshots):
    from studio.cli.main import build_parser
    from studio.cli.spec import spec_from_args
    from studio.jobs import stop_scheduler
    from studio.search import control

    spec = spec_from_args(build_parser().parse_args(["train", "--data", "sample:wine", "--epochs", "2"]))
    search = control.start_search(spec, max_trials=3)
    done = control.wait_for_search(search.id, timeout=240)
    assert done.state == "finished" and done.best_job_id
    stop_scheduler(timeout=5)

    studio.wait_for("Training Studio is ready", timeout=120)
    page.goto(f"{studio.url}/search?search={search.id}")
    page.get_by_role("heading", name=re.compile("^Search")).first.wait_for(timeout=60_000)
    page.get_by_text("Finished · 3 trials (3 finished)").wait_for(timeout=60_000)
    page.get_by_text("your settings (trial 0)").first.wait_for(timeout=30_000)  # the reference line
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)
    page.get_by_text(re.compile("(has the best|whose|a better) validation accuracy")).wait_for(timeout=30_000)
    assert page.get_by_text(re.compile("they train without touching the test rows")).count() == 1
    link = page.get_by_role("link", name="Open the chosen model's run")
    assert done.best_job_id in (link.get_attribute("href") or "")
    menu = page.locator('[data-testid="stSidebarNav"]')
    assert any(text.strip().endswith("Search") for text in menu.get_by_role("link").all_inner_texts())
    page.screenshot(path=str(screenshots / "search_page.png"), full_page=True)

    link.click()
    page.get_by_text(re.compile("trial")).first.wait_for(timeout=60_000)
    page.get_by_role("button", name=re.compile("Download the model")).wait_for(timeout=60_000)
