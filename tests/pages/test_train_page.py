"""The Train page, driven through the app's navigation with Streamlit's AppTest.

One test submits a real job from the page and waits for the real scheduler and worker to train it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block

from studio import data as datasets
from studio import jobs
from studio.app import forms
from tests.processes import stop_everything_under

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 60


@pytest.fixture
def home(studio_home: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh studio home on CPU only; afterwards the scheduler is stopped and every process it started
    is killed."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("STUDIO_CPU_SLOTS", raising=False)
    monkeypatch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
    studio_home.mkdir(parents=True, exist_ok=True)
    yield studio_home
    stop_everything_under(studio_home)


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
        if field.widget == "checkbox":  # a long label wraps in a narrow column instead of being cut
            assert widget.proto.wrap, field.path
    assert at.number_input(key="train__training__epochs").value == 100
    assert at.number_input(key="train__arch_mlp__width").value == 128
    assert at.checkbox(key="train__data__use_all_data").value  # a small table starts with fold models
    text = " ".join(m.value for m in at.markdown)
    assert "**Where it trains:** CPU (" in text and "Rough guess" in text
    assert "5 fold models, each" in text  # and the guess counts them


def test_choosing_another_target_or_preset_updates_the_suggestions(home: Path) -> None:
    at = _train_page()
    at.selectbox(key="train_target").set_value("alcohol").run()
    assert at.selectbox(key="train_task").value == "regression"
    metric = at.selectbox(key="train__early_stopping__metric")
    assert metric.options == [  # in words, not metric codes such as val/mae
        "Validation loss",
        "Validation mean absolute error",
        "Validation root mean squared error",
        "Validation R²",
    ]
    assert metric.value == "val/rmse"  # a regression watches its error in its own units, as the CLI
    at.selectbox(key="train_target").set_value("target").run()
    assert at.selectbox(key="train_task").value == "classification"
    assert at.selectbox(key="train__early_stopping__metric").value == "val/loss"

    at.selectbox(key="train_target").set_value("alcohol").run()
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
    assert at.button(key="train_submit").disabled  # a browser cannot press it (AppTest refuses too)
    assert any("Train is off until the problem noted above is fixed" in c.value for c in at.caption)
    assert jobs.list_jobs() == []


def test_pressing_train_runs_a_real_job_to_the_end(home: Path) -> None:
    at = _train_page()
    at.number_input(key="train__training__epochs").set_value(2).run()
    at.text_input(key="train__name").set_value("from the page").run()
    at.button(key="train_submit").click().run(timeout=TIMEOUT)

    (job,) = jobs.list_jobs()
    assert job.name == "from the page" and job.spec.training.epochs == 2
    assert job.spec.data.use_all_data  # the switch the form showed ticked
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


def _page_text(at: AppTest) -> str:
    kinds = ("markdown", "caption", "error", "warning", "info", "success")
    return "\n".join(element.value for kind in kinds for element in getattr(at, kind))


def _error_under(at: AppTest, key: str) -> str:
    """The text of the error shown right under the widget ``key`` (the next element of its block)."""
    for block in _blocks(at.main):
        children = list(block.children.values())
        for i, child in enumerate(children):
            if not isinstance(child, Block) and getattr(child, "key", None) == key:
                after = children[i + 1] if i + 1 < len(children) else None
                assert after is not None and after.type == "error", f"nothing under {key}: {after}"
                return after.value
    raise AssertionError(f"no widget {key}")


def _blocks(block: Block):
    yield block
    for child in block.children.values():
        if isinstance(child, Block):
            yield from _blocks(child)


def test_switching_the_data_set_in_the_dropdown_keeps_the_new_choice(home: Path) -> None:
    wine, diabetes = datasets.add_sample("wine"), datasets.add_sample("diabetes")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/train.py").run()
    for chosen, task in ((wine, "classification"), (diabetes, "regression"), (wine, "classification")):
        at.selectbox(key="train_dataset").set_value(chosen.id).run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.selectbox(key="train_dataset").value == chosen.id
        assert at.selectbox(key="train_task").value == task
        at.run()  # and it stays on the next run
        assert at.selectbox(key="train_dataset").value == chosen.id


@pytest.mark.parametrize(
    ("key", "typed", "message"),
    [
        ("train__training__epochs", 0, "Epochs must be at least 1 (you typed 0)."),
        ("train__optimizer__learning_rate", 100.0, "Learning rate must be at most 10 (you typed 100)."),
        ("train__optimizer__learning_rate", -1.0, "Learning rate must be more than 0 (you typed -1)."),
    ],
)
def test_an_out_of_range_value_is_kept_explained_under_its_field_and_blocks_train(
    home: Path, key: str, typed: float, message: str
) -> None:
    at = _train_page()
    at.number_input(key=key).set_value(typed).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.number_input(key=key).value == typed  # the field shows what was typed
    assert _error_under(at, key) == message
    assert at.button(key="train_submit").disabled
    (why,) = [w.value for w in at.warning if "Train is off until this is fixed" in w.value]
    assert message in why
    text = _page_text(at)
    assert (
        "Invalid spec" not in text and "optimizer.learning_rate" not in text and "training.epochs" not in text
    )
    assert jobs.list_jobs() == []


def test_no_target_suggested_means_none_is_picked_and_train_waits_for_one(home: Path) -> None:
    import json

    info = datasets.add_sample("wine")
    profile_file = info.path / "profile.json"
    profile = json.loads(profile_file.read_text())
    profile["suggested_target"] = None  # the studio is unsure what to predict
    profile_file.write_text(json.dumps(profile))
    at = _train_page(sample=None)
    target = at.selectbox(key="train_target")
    assert target.value is None and target.placeholder == "Choose a column"
    assert "Pick the column you want to predict." in [i.value for i in at.info]
    assert at.button(key="train_submit").disabled

    at.selectbox(key="train_target").set_value("target").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="train_task").value == "classification"
    assert not at.button(key="train_submit").disabled
    assert not [w for w in at.warning if "Train is off" in w.value]


def test_a_blocking_target_warning_is_shown_and_blocks_train(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusal = {
        "code": "identifier_target",
        "column": "target",
        "message": "'target' has a different value in almost every row, like a name or an ID.",
        "action": "Training is refused: pick another target column.",
        "blocks": True,
    }
    monkeypatch.setattr(datasets, "warnings_for_target", lambda df, profile, target, task=None: [refusal])
    at = _train_page()
    assert at.button(key="train_submit").disabled
    shown = [w.value for w in at.warning]
    assert any("like a name or an ID" in w and "Training is refused" in w for w in shown), shown
    assert any("Train is off until the problem noted above is fixed" in c.value for c in at.caption)


def test_the_time_guess_says_it_assumes_an_idle_machine(home: Path) -> None:
    at = _train_page()
    (how_long,) = [m.value for m in at.markdown if "**How long:**" in m.value]
    assert "Rough guess for an idle machine" in how_long and "twice as long" in how_long


def test_a_page_press_stores_its_token_and_the_same_token_makes_no_second_job(home: Path) -> None:
    at = _train_page()
    at.number_input(key="train__training__epochs").set_value(1).run()
    at.button(key="train_submit").click().run(timeout=TIMEOUT)
    (job,) = jobs.list_jobs()
    assert job.submit_token  # the press's token is stored with the job
    again = jobs.submit_job(job.spec, token=job.submit_token, start_scheduler=False)
    assert again.id == job.id and len(jobs.list_jobs()) == 1
