"""In a real browser against `studio serve`: a trained table model's run page explains the model (the
job runs in the studio's own scheduler and worker) and makes a small version, pruned by half; screenshots
of both."""

from __future__ import annotations

import pytest

from tests.e2e.test_browser import settle
from tests.e2e.test_train_form import choose_by_keyboard
from tests.pages.test_runs_page import run_in_process, spec, tiny_dataset

pytestmark = pytest.mark.e2e


def test_the_run_page_explains_a_model_and_makes_a_small_version(studio, page, screenshots, tmp_path):
    done = run_in_process(spec(tiny_dataset(tmp_path, rows=160), "<b>penguin</b> model", training={"epochs": 4}))
    assert done.state == "succeeded", done.reason
    studio.wait_for("is ready", timeout=180)
    page.goto(f"{studio.url}/runs?job={done.id}")
    settle(page)
    # `serve --no-mlflow-ui`: it says so, and the run page says why it has no link to the MLflow UI
    assert "The MLflow UI is not started; run pages hide its links." in studio.text()
    page.get_by_text("This studio runs without the MLflow UI, so there is no link to this run").wait_for()
    assert page.get_by_role("link", name="Open this run in MLflow").count() == 0
    page.get_by_role("button", name="Explain this model").click()
    page.locator(".js-plotly-plot .barlayer .point").first.wait_for(timeout=240_000)
    settle(page)
    page.get_by_text("Each bar is how much the test accuracy").wait_for()
    # prune half the weights, and (24 test rows: one row lost is 4 points) allow 10 points, as a person would
    choose_by_keyboard(page, "small-prune", "50%")
    assert page.locator(".st-key-small-prune input[role=combobox]").input_value() == "50% of the weights"
    tolerance = page.get_by_role("spinbutton", name="Largest loss of test accuracy to accept")
    tolerance.fill("0.100")
    tolerance.press("Enter")
    page.wait_for_timeout(1000)
    settle(page)
    page.get_by_role("button", name="Make a small version").click()
    page.get_by_text("one row at a time on one CPU core").wait_for(timeout=240_000)  # under the table
    settle(page)
    page.get_by_text("of the weights zeroed (magnitude pruning)").first.wait_for()
    made = page.get_by_role("button", name="Download the small version (bundle .zip)")
    refused = page.get_by_text("The small version was refused: it loses")
    assert made.count() == 1 or refused.count() == 1
    # the choices made are still shown after the job (not snapped back to their defaults)
    assert page.locator(".st-key-small-prune input[role=combobox]").input_value() == "50% of the weights"
    assert tolerance.input_value() == "0.100"
    page.screenshot(path=str(screenshots / "explain-run-page.png"), full_page=True)
