"""The Train page, driven through the app's navigation with Streamlit's AppTest.

One test submits a real job from the page and waits for the real scheduler and worker to train it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from streamlit.testing.v1 import AppTest

from studio import datasets, forms, jobs

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 60


def _processes_under(folder: Path) -> list[psutil.Process]:
    """The scheduler runs in STUDIO_HOME and each worker in its job folder, both under ``folder``."""
    found = []
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info.get("cwd")
        if proc.pid != os.getpid() and cwd and Path(cwd).is_relative_to(folder):
            found.append(proc)
    return found


@pytest.fixture
def home(studio_home: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh studio home on CPU only; afterwards the scheduler is stopped and every process it started
    is killed."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("STUDIO_CPU_SLOTS", raising=False)
    monkeypatch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
    studio_home.mkdir(parents=True, exist_ok=True)
    yield studio_home
    jobs.stop_scheduler(timeout=5)
    for proc in _processes_under(studio_home):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    psutil.wait_procs(_processes_under(studio_home), timeout=5)


def _train_page(sample: str | None = "wine") -> AppTest:
    if sample:
        datasets.add_sample(sample)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


ACCESSOR = {
    "checkbox": "checkbox",
    "select": "selectbox",
    "multiselect": "multiselect",
    "number": "number_input",
    "text": "text_input",
}


def _keys_in(block) -> set[str]:
    return {widget.key for kind in set(ACCESSOR.values()) for widget in block.get(kind)}


def test_without_data_the_page_points_to_the_data_page(home: Path) -> None:
    at = _train_page(sample=None)
    assert "no data set yet" in at.info[0].value
    assert not at.button


def test_the_form_is_generated_from_the_spec(home: Path) -> None:
    at = _train_page()
    assert at.selectbox(key="train_target").value == "target"
    assert at.selectbox(key="train_task").value == "classification"
    assert at.selectbox(key="train_architecture").value == "mlp"

    advanced_keys = _keys_in(at.expander[-1])
    choices = {
        "early_stopping.metric": forms.metric_choices("classification"),
        "data.features": ["alcohol"],
        "training.device": forms.device_choices(),
    }
    for field in forms.form_fields("mlp", choices):
        widget = getattr(at, ACCESSOR[field.widget])(key=field.key)
        assert widget.label == field.label and (widget.help or "") == field.help, field.path
        assert (field.key in advanced_keys) == field.advanced, field.path
    assert at.number_input(key="train__training__epochs").value == 100
    assert at.number_input(key="train__arch_mlp__width").value == 128
    text = " ".join(m.value for m in at.markdown)
    assert "**Where it trains:** CPU (" in text and "Rough guess" in text


def test_choosing_another_target_or_preset_updates_the_suggestions(home: Path) -> None:
    at = _train_page()
    at.selectbox(key="train_target").set_value("alcohol").run()
    assert at.selectbox(key="train_task").value == "regression"
    assert at.selectbox(key="train__early_stopping__metric").options == [
        "val/loss",
        "val/mae",
        "val/rmse",
        "val/r2",
    ]

    at.radio(key="train_preset").set_value("fast").run()
    assert at.number_input(key="train__training__epochs").value == 20
    assert at.number_input(key="train__early_stopping__patience").value == 5
    assert "at most 20 epochs" in " ".join(c.value for c in at.caption)


def test_the_data_set_looked_at_on_the_data_page_is_picked_for_training(home: Path) -> None:
    wine, diabetes = datasets.add_sample("wine"), datasets.add_sample("diabetes")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    for chosen, target, task in ((wine, "target", "classification"), (diabetes, "target", "regression")):
        at.switch_page("pages/data.py").run()
        at.selectbox(key="data_selected").set_value(chosen.id).run()
        at.switch_page("pages/train.py").run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.selectbox(key="train_dataset").value == chosen.id
        assert at.selectbox(key="train_target").value == target
        assert at.selectbox(key="train_task").value == task


def test_a_risky_learning_rate_shows_a_warning(home: Path) -> None:
    at = _train_page()
    assert not at.warning
    at.number_input(key="train__optimizer__learning_rate").set_value(0.5).run()
    assert not at.exception
    (warning,) = [w.value for w in at.warning]
    assert "far above the usual range" in warning and "Try 0.001" in warning


def test_an_invalid_combination_shows_a_plain_error_and_train_does_nothing(home: Path) -> None:
    at = _train_page()
    at.number_input(key="train__data__val_fraction").set_value(0.5).run()
    at.number_input(key="train__data__test_fraction").set_value(0.5).run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert "at most 0.6" in error and "40% of rows" in error
    at.button(key="train_submit").click().run()
    assert not at.exception and len(at.error) == 1
    assert jobs.list_jobs() == []


def test_pressing_train_runs_a_real_job_to_the_end(home: Path) -> None:
    at = _train_page()
    at.number_input(key="train__training__epochs").set_value(2).run()
    at.text_input(key="train__name").set_value("from the page").run()
    at.button(key="train_submit").click().run(timeout=TIMEOUT)

    (job,) = jobs.list_jobs()
    assert job.name == "from the page" and job.spec.training.epochs == 2
    assert job.spec.data.dataset_id == datasets.list_datasets()[0].id and job.spec.data.target == "target"
    if Path(APP).with_name("pages").joinpath("runs.py").is_file():
        assert at.query_params.get("job") in (job.id, [job.id])
    else:
        assert job.id in at.success[0].value

    deadline = time.monotonic() + 120
    while (job := jobs.get_job(job.id)).is_active and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.state == jobs.SUCCEEDED, f"{job.state}: {job.reason}"
    assert job.epoch == 2 and job.mlflow_run_id and job.bundle_path and Path(job.bundle_path).is_file()
