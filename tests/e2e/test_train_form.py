"""The Train form in a real browser: what is typed is what trains (or Train says why it cannot), the
Data set dropdown keeps the data set picked with the mouse or the keyboard, and a double click on Train makes one job.

AppTest sets a widget's value directly, so a number field that keeps its old value or a dropdown that
snaps back passes there and fails a person; these checks type and click in headless Chromium against
one ``python -m studio serve``.
"""

from __future__ import annotations

import contextlib
import re
import time

import pytest

from tests.e2e.test_browser import open_page, settle
from tests.pages.test_data_page_images import picture_zip

pytestmark = pytest.mark.e2e

SUBMIT = ".st-key-train_submit button"


def number(page, label: str):
    return page.get_by_role("spinbutton", name=label, exact=True)


def type_number(page, label: str, value: str) -> None:
    """Type into a number field the way a person does: select what is there, type, press Enter."""
    field = number(page, label)
    field.fill(value)
    field.press("Enter")
    settle(page)


def choose(page, key: str, label: re.Pattern) -> None:
    """Pick an option of a dropdown with the mouse."""
    page.locator(f".st-key-{key} input[role=combobox]").click()
    page.get_by_role("option", name=label).click()
    settle(page)


def choose_by_keyboard(page, key: str, typed: str) -> None:
    """Pick an option of a dropdown with the keyboard: type the start of its name, arrow down, Enter."""
    box = page.locator(f".st-key-{key} input[role=combobox]")
    box.focus()
    box.press("Control+a")
    box.press_sequentially(typed)
    page.get_by_role("option").first.wait_for()
    box.press("ArrowDown")
    box.press("Enter")
    settle(page)


def assert_stays(page, key: str, name: str) -> None:
    """The dropdown still shows ``name`` a while later (the snap-back came within half a second)."""
    page.wait_for_timeout(1500)
    settle(page)
    shown = shown_choice(page, key)
    assert shown.startswith(f"{name} "), (name, shown)


def shown_choice(page, key: str) -> str:
    return page.locator(f".st-key-{key} input[role=combobox]").input_value()


def error_under(page, label: str, message: str) -> None:
    """``message`` is shown as an error right below the number field called ``label``."""
    error = page.locator('[data-testid="stAlert"]').filter(has_text=message)
    error.first.wait_for(timeout=10_000)
    field, box = number(page, label).bounding_box(), error.first.bounding_box()
    assert 0 <= box["y"] - (field["y"] + field["height"]) < 60, (field, box)
    assert abs(box["x"] - field["x"]) < 80, (field, box)


def submit_state(page, disabled: bool, timeout: float = 20.0) -> tuple[bool, str]:
    """Whether Train is disabled, and the text of the page (where its reason is), once the page shows
    ``disabled`` or ``timeout`` seconds have passed. A typed value can reach the app a moment after the
    previous run looked finished; while the new run draws, the part below the field is still the old one."""
    deadline = time.monotonic() + timeout
    while True:
        settle(page)
        shown = page.locator(SUBMIT).is_disabled()
        text = page.locator('[data-testid="stMain"]').inner_text()
        if shown == disabled or time.monotonic() > deadline:
            return shown, text
        page.wait_for_timeout(250)


def double_click(page, selector: str, gap_ms: int = 150) -> None:
    """Press a button twice, ``gap_ms`` apart; the second press is skipped when the button is gone or
    off by then (a person's second click would then do nothing either)."""
    page.locator(selector).click()
    page.wait_for_timeout(gap_ms)
    with contextlib.suppress(pytest.importorskip("playwright.sync_api").TimeoutError):
        page.locator(selector).click(timeout=1000, no_wait_after=True)


def look_at_the_run_page(page) -> None:
    """Stay on a just-opened run page as long as a person would before going back to Train."""
    from studio.app.ui import DOUBLE_CLICK_SECONDS

    settle(page)
    page.wait_for_timeout(DOUBLE_CLICK_SECONDS * 1000)


def new_job_ids(before: set[str], wait: float = 4.0) -> set[str]:
    """Ids of jobs made since ``before`` (waits a little, so a late second job would be seen)."""
    from studio import jobs

    time.sleep(wait)
    return {job.id for job in jobs.list_jobs()} - before


def test_typed_values_train_the_dropdown_keeps_its_choice_and_a_double_click_makes_one_job(
    studio, page, screenshots
) -> None:
    from studio import data as datasets
    from studio import jobs, tracking

    wine, diabetes = datasets.add_sample("wine"), datasets.add_sample("diabetes")
    shapes = datasets.add_image_zip(picture_zip(per_class=6), filename="shapes.zip")
    studio.wait_for("is ready", timeout=120)
    page.goto(studio.url)
    page.get_by_role("heading", name="Data").first.wait_for()
    settle(page)
    open_page(page, "Train")

    # (b, first half) The dropdown keeps what the mouse picked (a table, another table, the pictures),
    # and what the keyboard picked.
    for info in (wine, diabetes, shapes):
        choose(page, "train_dataset", re.compile(rf"^{info.name} "))
        assert_stays(page, "train_dataset", info.name)
    choose_by_keyboard(page, "train_dataset", "win")
    assert_stays(page, "train_dataset", wine.name)
    assert shown_choice(page, "train_target") == "target"

    # (a) Out-of-range numbers: a plain error under the field, Train off and saying why, no job.
    type_number(page, "Epochs (at most)", "0")
    error_under(page, "Epochs (at most)", "Epochs must be at least 1 (you typed 0).")
    disabled, text = submit_state(page, disabled=True)
    assert disabled and "Train is off until" in text, text[-600:]
    type_number(page, "Epochs (at most)", "3")
    for typed, message in (
        ("100", "Learning rate must be at most 10 (you typed 100)."),
        ("-1", "Learning rate must be more than 0 (you typed -1)."),
    ):
        type_number(page, "Learning rate", typed)
        error_under(page, "Learning rate", message)
        disabled, text = submit_state(page, disabled=True)
        assert disabled and "Train is off until" in text, text[-600:]
        assert "Invalid spec" not in text and "optimizer.learning_rate" not in text
    page.screenshot(path=str(screenshots / "train-form-errors.png"), full_page=True)
    assert number(page, "Learning rate").input_value() == "-1"  # the field shows what was typed
    assert jobs.list_jobs() == []

    type_number(page, "Learning rate", "0.02")
    page.locator('[data-testid="stAlert"]').filter(has_text="must be").first.wait_for(state="detached")
    disabled, text = submit_state(page, disabled=False)
    assert not disabled and "must be" not in text, text[-600:]
    page.locator(SUBMIT).click()
    page.wait_for_url(re.compile(r"/runs\?job="), timeout=30_000)
    (typed_job,) = jobs.list_jobs()
    assert typed_job.dataset_id == wine.id
    assert (typed_job.spec.training.epochs, typed_job.spec.optimizer.learning_rate) == (3, 0.02)

    # (b, second half) Back on Train (as a person does after a look at the run page; sooner, the Train
    # page would take the address it is given, which keeps ``?job=``, for a double click's second click):
    # switch to the other table, then the pictures, and train those.
    look_at_the_run_page(page)
    open_page(page, "Train")
    for info in (diabetes, shapes):
        choose(page, "train_dataset", re.compile(rf"^{info.name} "))
        assert_stays(page, "train_dataset", info.name)
    type_number(page, "Epochs (at most)", "1")
    before = {job.id for job in jobs.list_jobs()}
    page.locator(SUBMIT).click()
    page.wait_for_url(re.compile(r"/runs\?job="), timeout=30_000)
    (picture_job,) = [jobs.get_job(job_id) for job_id in new_job_ids(before, wait=0.5)]
    assert picture_job.dataset_id == shapes.id and picture_job.spec.task == "image_classification"

    # (c) A double click on Train makes one job: two presses 150 ms apart, as a person double-clicks
    # (Playwright's own double click is so fast that both presses reach Streamlit as one).
    look_at_the_run_page(page)
    open_page(page, "Train")
    assert shown_choice(page, "train_dataset").startswith(shapes.name)
    before = {job.id for job in jobs.list_jobs()}
    double_click(page, SUBMIT)
    page.wait_for_url(re.compile(r"/runs\?job="), timeout=30_000)
    made = new_job_ids(before)
    assert len(made) == 1, [jobs.get_job(job_id).name for job_id in made]
    assert page.url.endswith(f"/runs?job={made.pop()}"), page.url  # both clicks land on its run page

    # The typed values are what trained: MLflow has them as the run's parameters.
    finished = jobs.wait_for_job(typed_job.id, timeout=240)
    assert finished.state == jobs.SUCCEEDED, finished.reason
    params = tracking.get_run(finished.mlflow_run_id).params
    assert (params["training.epochs"], params["optimizer.learning_rate"]) == ("3", "0.02")
