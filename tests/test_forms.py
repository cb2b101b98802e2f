"""The Train form as pure functions: generated from the spec, values back to a spec, advice, time guess."""

from __future__ import annotations

import re
import typing

import pytest
from pydantic import BaseModel

from studio.app import forms
from studio.core import system
from studio.core.spec import ARCHITECTURES, PRESETS, RunSpec, StudioModel
from studio.modalities.image import views as picture_views


def _spec(**changes) -> RunSpec:
    base = RunSpec.from_dict({"task": "classification", "data": {"dataset_id": "d", "target": "y"}})
    return base.with_changes(**changes) if changes else base


def _leaf_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    paths = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, StudioModel):
            paths |= _leaf_paths(annotation, f"{prefix}{name}.")
        else:
            paths.add(f"{prefix}{name}")
    return paths


def _by_path(fields: list[forms.FormField]) -> dict[str, forms.FormField]:
    return {f.path: f for f in fields}


def _applies(path: str, task: str, architecture: str | None = None) -> bool:
    skipped = forms.not_applicable(task, architecture)
    return not any(path == skip or path.startswith(f"{skip}.") for skip in skipped)


@pytest.mark.parametrize(
    ("architecture", "task"), [(a, t) for a in ARCHITECTURES for t in ARCHITECTURES[a].tasks]
)
def test_every_spec_field_gets_one_widget_except_those_the_page_chooses(architecture: str, task: str) -> None:
    fields = forms.form_fields(architecture, task=task)
    params = {f"architecture.params.{n}" for n in ARCHITECTURES[architecture].params_model.model_fields}
    applying = {p for p in _leaf_paths(RunSpec) - forms.PAGE_CHOSEN if _applies(p, task, architecture)}
    expected = applying | params
    assert {f.path for f in fields} == expected
    assert len({f.key for f in fields}) == len(fields)
    assert all(f.key.startswith(forms.KEY_PREFIX) for f in fields)


def test_widgets_follow_the_field_types_titles_hints_and_bounds() -> None:
    fields = _by_path(forms.form_fields("mlp"))
    info = RunSpec.model_fields["training"].annotation.model_fields["epochs"]

    epochs = fields["training.epochs"]
    assert (epochs.widget, epochs.integer, epochs.step, epochs.number_format) == ("number", True, 1, "%d")
    assert epochs.name == "Epochs"  # the label without its note in brackets, for sentences
    assert (epochs.label, epochs.help, epochs.default, epochs.advanced) == (
        info.title,
        info.description,
        100,
        False,
    )

    optimizer = fields["optimizer.name"]
    assert optimizer.widget == "select" and optimizer.options == ("adamw", "adam", "sgd")
    assert optimizer.option_label("sgd") == "SGD with momentum"
    assert fields["preprocessing.numeric_scaling"].option_label("minmax") == "minmax"  # no label: the value

    lr = fields["optimizer.learning_rate"]
    assert (lr.widget, lr.integer, lr.number_format) == ("number", False, "%g")
    assert lr.step == pytest.approx(0.001)
    val_fraction = fields["data.val_fraction"]
    assert (val_fraction.step, val_fraction.number_format, val_fraction.advanced) == (0.05, "%g", True)
    # No widget limits: a browser number field with limits keeps its old value when the typed one is
    # outside them, so the page would show one number and train with another.
    assert not hasattr(epochs, "min_value") and not hasattr(lr, "max_value")

    assert fields["early_stopping.enabled"].widget == "checkbox"
    assert fields["name"].widget == "text" and fields["name"].optional and fields["name"].section == ""
    assert fields["early_stopping.metric"].widget == "text"  # free text until the page offers choices
    assert fields["data.features"].widget == "multiselect" and fields["data.features"].options == ()

    width = fields["architecture.params.width"]
    assert width.label == "Layer width" and not width.advanced and width.key == "train__arch_mlp__width"
    assert fields["architecture.params.embedding_dim"].advanced


def test_choices_turn_text_and_list_fields_into_pick_lists() -> None:
    fields = _by_path(
        forms.form_fields(
            "linear",
            {
                "early_stopping.metric": forms.metric_choices("regression"),
                "data.features": ["a", "b"],
                "training.device": forms.device_choices(gpus=["NVIDIA H100"]),
            },
        )
    )
    assert fields["early_stopping.metric"].widget == "select"
    assert fields["early_stopping.metric"].options == ("val/loss", "val/mae", "val/rmse", "val/r2")
    assert fields["data.features"].options == ("a", "b")
    assert fields["training.device"].options == ("auto", "cpu", "cuda:0")
    assert not any(path.startswith("architecture.params") for path in fields)


def test_a_table_form_has_no_picture_settings() -> None:
    assert not any(f.path.startswith("image.") for f in forms.form_fields("mlp", task="regression"))
    assert "preprocessing" in forms.not_applicable("image_classification")


def test_a_regression_form_starts_watching_the_error_in_the_target_s_units_as_the_cli() -> None:
    for task, metric in (("regression", "val/rmse"), ("classification", "val/loss")):
        fields = _by_path(forms.form_fields("mlp", {"early_stopping.metric": forms.metric_choices(task)}, task))
        assert fields["early_stopping.metric"].default == metric
        values = {f.path: f.default for f in fields.values() if f.default is not None}
        check = forms.check_values(dataset_id="d", target="y", task=task, architecture="mlp", values=values)
        assert check.spec == RunSpec.from_dict({"task": task, "data": {"dataset_id": "d", "target": "y"}})


def test_use_all_my_data_is_offered_for_tables_and_the_bag_of_words_not_a_pretrained_network() -> None:
    def offered(architecture: str, task: str) -> bool:
        return "data.use_all_data" in {f.path for f in forms.form_fields(architecture, task=task)}

    assert offered("mlp", "classification") and offered("bag_of_words", "text_classification")
    assert offered("bag_of_words", "text_regression")
    assert not offered("minilm_l6", "text_classification")
    assert not offered("small_cnn", "image_classification")


def test_fields_are_ordered_by_section_like_the_spec() -> None:
    sections = [f.section for f in forms.form_fields("mlp")]
    order = [s for s in forms.SECTION_TITLES if s in sections]
    assert sections == sorted(sections, key=order.index)


FORM_FIELDS = forms.form_fields("mlp", {"data.features": ["a", "b"], "early_stopping.metric": ["val/loss"]})
DEFAULTS = {f.path: ([] if f.widget == "multiselect" else f.default) for f in FORM_FIELDS}


def _check(task: str = "classification", architecture: str = "mlp", **changes) -> forms.FormCheck:
    values = dict(DEFAULTS if architecture == "mlp" else {}, **changes)
    return forms.check_values(
        dataset_id="d", target="y", task=task, architecture=architecture, values=values, fields=FORM_FIELDS
    )


def test_values_become_a_validated_spec() -> None:
    assert _check() == forms.FormCheck(_spec())

    changed = {
        "training.epochs": 3,
        "architecture.params.width": 16,
        "name": "  quick  ",
        "data.features": ["a"],
    }
    spec = _check(**changed).spec
    assert (spec.training.epochs, spec.architecture.params["width"], spec.name) == (3, 16, "quick")
    assert spec.data.features == ["a"]

    empty_name = _check(task="regression", architecture="linear", name="  ").spec
    assert empty_name.name is None and empty_name.task == "regression"


def test_allowed_values_train_exactly_as_typed_even_when_risky() -> None:
    check = _check(**{"optimizer.learning_rate": 5.0, "training.epochs": 7, "data.val_fraction": 0.123})
    assert (check.spec.optimizer.learning_rate, check.spec.training.epochs) == (5.0, 7)
    assert check.spec.data.val_fraction == 0.123 and check.problems == []
    assert "far above the usual range" in forms.risky_values(check.spec, 500)[0]  # advice, not a block


@pytest.mark.parametrize(
    ("changes", "path", "message"),
    [
        ({"training.epochs": 0}, "training.epochs", "Epochs must be at least 1 (you typed 0)."),
        ({"training.epochs": 20000}, "training.epochs", "Epochs must be at most 10,000 (you typed 20000)."),
        ({"training.epochs": 2.5}, "training.epochs", "Epochs must be a whole number (you typed 2.5)."),
        ({"training.epochs": None}, "training.epochs", "Epochs is empty: type a number."),
        (
            {"optimizer.learning_rate": 100.0},
            "optimizer.learning_rate",
            "Learning rate must be at most 10 (you typed 100).",
        ),
        (
            {"optimizer.learning_rate": -1.0},
            "optimizer.learning_rate",
            "Learning rate must be more than 0 (you typed -1).",
        ),
        (
            {"optimizer.learning_rate": 0.0},
            "optimizer.learning_rate",
            "Learning rate must be more than 0 (you typed 0).",
        ),
        (
            {"architecture.params.width": 2},
            "architecture.params.width",
            "Layer width must be at least 4 (you typed 2).",
        ),
        (
            {"architecture.params.dropout": 0.95},
            "architecture.params.dropout",
            "Dropout must be at most 0.9 (you typed 0.95).",
        ),
        ({"optimizer.momentum": 1.0}, "optimizer.momentum", "Momentum must be less than 1 (you typed 1)."),
    ],
)
def test_a_value_out_of_range_is_explained_under_its_field_and_makes_no_spec(
    changes: dict, path: str, message: str
) -> None:
    check = _check(**changes)
    assert check.spec is None
    assert check.field_errors == {path: message} and check.errors == ()


@pytest.mark.parametrize(
    ("architecture", "task", "target"),
    [("mlp", "classification", "y"), ("small_cnn", "image_classification", "label")],
)
def test_every_bound_in_the_messages_is_the_spec_s_own(architecture: str, task: str, target: str) -> None:
    """A value past each bound of each number field: the message names the field and the spec's bound
    (the field's pydantic constraint), and no dotted path."""
    import annotated_types

    fields = forms.form_fields(architecture, task=task)
    infos = _field_infos(RunSpec) | {
        f"architecture.params.{name}": info
        for name, info in ARCHITECTURES[architecture].params_model.model_fields.items()
    }
    checked = 0
    for field in (f for f in fields if f.widget == "number"):
        for item in infos[field.path].metadata:
            bound = next((getattr(item, a) for a in ("ge", "gt", "le", "lt") if hasattr(item, a)), None)
            if bound is None:
                continue
            typed = bound - 1 if isinstance(item, (annotated_types.Ge, annotated_types.Gt)) else bound * 2 + 1
            check = forms.check_values(
                dataset_id="d",
                target=target,
                task=task,
                architecture=architecture,
                values={field.path: int(typed) if field.integer else float(typed)},
                fields=fields,
            )
            message = check.field_errors[field.path]
            assert message.startswith(f"{field.name} must be "), message
            assert f" {forms._shown(bound)} (you typed" in message, message
            assert not re.search(r"\b[a-z_]+\.[a-z_]+\b", message), message
            checked += 1
    assert checked >= 12


def _field_infos(model, prefix: str = "") -> dict:
    found = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, StudioModel):
            found |= _field_infos(annotation, f"{prefix}{name}.")
        else:
            found[f"{prefix}{name}"] = info
    return found


def test_combinations_the_spec_refuses_are_plain_sentences_without_setting_paths() -> None:
    check = _check(**{"data.val_fraction": 0.5, "data.test_fraction": 0.5, "training.epochs": 0})
    assert check.spec is None and check.field_errors == {
        "training.epochs": "Epochs must be at least 1 (you typed 0)."
    }
    (combination,) = check.errors
    assert combination.startswith("The validation share and the test share together must be at most 0.6")
    assert "40% of rows" in combination
    (metric,) = _check(task="regression", **{"early_stopping.metric": "val/accuracy"}).errors
    assert "does not fit regression" in metric
    for text in check.problems + [metric]:
        assert "Invalid spec" not in text and not re.search(r"\b[a-z_]+\.[a-z_]+\b", text), text


def test_without_a_target_the_other_values_are_still_checked() -> None:
    values = dict(DEFAULTS, **{"training.epochs": 0})
    check = forms.check_values(
        dataset_id="d",
        target=None,
        task="classification",
        architecture="mlp",
        values=values,
        fields=FORM_FIELDS,
    )
    assert check.spec is None and check.problems == ["Epochs must be at least 1 (you typed 0)."]
    fine = forms.check_values(
        dataset_id="d",
        target=None,
        task="classification",
        architecture="mlp",
        values=DEFAULTS,
        fields=FORM_FIELDS,
    )
    assert fine == forms.FormCheck(None)


def test_presets_only_touch_fields_the_form_shows() -> None:
    paths = {f.path for f in forms.form_fields("mlp")}
    for preset in PRESETS:
        assert set(forms.preset_values(preset)) <= paths
    assert forms.preset_values("fast")["training.epochs"] == 20
    assert forms.preset_values("no such preset") == {}


def test_default_settings_on_an_ordinary_table_raise_no_advice() -> None:
    assert forms.risky_values(_spec(), 178) == []
    assert forms.risky_values(_spec(**{"training.epochs": 400}), 5000) == []  # early stopping is on


@pytest.mark.parametrize(
    ("changes", "rows", "expected"),
    [
        ({"optimizer.learning_rate": 0.5}, 500, "far above the usual range (0.00001 to 0.1)"),
        ({"optimizer.learning_rate": 1e-7}, 500, "far below the usual range"),
        ({"training.batch_size": 1024}, 500, "larger than the about 350 training rows"),
        ({"training.epochs": 5000}, 500, "5,000 epochs is very many"),
        ({"training.epochs": 500, "early_stopping.enabled": False}, 500, "all 500 epochs run"),
        ({}, 60, "Only about 42 rows are left to train on"),
        ({"data.val_fraction": 0.05}, 150, "Only about 8 rows are held back for validation"),
    ],
)
def test_risky_values_say_what_will_happen(changes: dict, rows: int, expected: str) -> None:
    advice = forms.risky_values(_spec(**changes), rows)
    assert len(advice) == 1 and expected in advice[0], advice


def test_effective_batch_size_follows_the_training_rule() -> None:
    assert forms.effective_batch_size(_spec(), 124) == 32
    assert forms.effective_batch_size(_spec(), 7000) == 128
    assert forms.effective_batch_size(_spec(), 700_000) == 512
    assert forms.effective_batch_size(_spec(**{"training.batch_size": 64}), 10) == 64


def test_usable_rows_leave_out_rows_without_a_target() -> None:
    profile = {"n_rows": 100, "columns": [{"name": "y", "missing": 7}, {"name": "x", "missing": 50}]}
    assert forms.usable_rows(profile, "y") == 93
    assert forms.usable_rows(profile, "gone") == 100


def test_time_estimate_grows_with_epochs_rows_and_network_and_says_it_is_rough() -> None:
    small = forms.estimate_time(_spec(**{"training.epochs": 20}), 178, 13)
    longer = forms.estimate_time(_spec(**{"training.epochs": 200}), 178, 13)
    bigger = forms.estimate_time(_spec(**{"training.epochs": 20}), 100_000, 13)
    wider = forms.estimate_time(
        _spec(**{"training.epochs": 20, "architecture.params.width": 1024}), 100_000, 13
    )
    on_gpu = forms.estimate_time(
        _spec(**{"training.epochs": 20, "architecture.params.width": 1024}), 100_000, 13, True
    )
    assert forms.STARTUP_SECONDS < small.seconds < longer.seconds
    assert small.seconds < bigger.seconds < wider.seconds
    assert on_gpu.seconds < wider.seconds
    assert (
        small.text.startswith("Rough guess for an idle machine: at most about")
        and "not a promise" in small.text
    )
    assert "other runs train or the computer is busy" in small.text and "twice as long" in small.text
    assert "Early stopping usually ends it sooner" in small.text
    assert "sooner" not in forms.estimate_time(_spec(**{"early_stopping.enabled": False}), 178, 13).text
    assert forms.estimate_time(_spec(**{"training.epochs": 10000}), 1_000_000, 50).text.count("hours") == 1


def test_device_text_names_the_gpu_or_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forms, "cpu_cores", lambda: 8)
    assert forms.device_text("auto", gpus=[]) == "CPU (8 cores)"
    assert forms.device_text("cpu", gpus=["NVIDIA H100"]) == "CPU (8 cores)"
    assert forms.device_text("auto", gpus=["NVIDIA H100"]) == "GPU 0: NVIDIA H100"
    assert "another of the 2 GPUs" in forms.device_text("auto", gpus=["A", "B"])
    assert forms.device_text("cuda:1", gpus=["A", "B"]) == "GPU 1: B"
    assert "does not exist" in forms.device_text("cuda:3", gpus=["A"])
    assert "no GPU here" in forms.device_text("cuda", gpus=[])


def test_visible_gpus_respect_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "gpu_names", lambda: ("A100", "H100"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert forms.visible_gpu_names() == ["A100", "H100"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert forms.visible_gpu_names() == ["H100"]
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert forms.visible_gpu_names() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5f1c")  # a UUID: named generically
    assert forms.visible_gpu_names() == ["GPU"]


def test_gpu_detection_never_fails_without_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    system.gpu_names.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        assert system.gpu_names() == ()
    finally:
        system.gpu_names.cache_clear()


def test_plain_numbers_avoid_exponents() -> None:
    assert [forms.plain_number(v) for v in (1e-5, 0.1, 3.0, 0.00025)] == ["0.00001", "0.1", "3", "0.00025"]


def test_forms_stays_cheap_to_import() -> None:
    import subprocess
    import sys

    code = "import sys, studio.app.forms; print(any(m in sys.modules for m in ('torch', 'lightning', 'streamlit')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unwrap_optional() -> None:
    assert forms._unwrap_optional(str | None) == (str, True)
    assert forms._unwrap_optional(typing.Optional[int]) == (int, True)  # noqa: UP045
    assert forms._unwrap_optional(int) == (int, False)


# --------------------------------------------------------------------------- pictures
def _image_spec(**changes) -> RunSpec:
    base = RunSpec.from_dict({"task": "image_classification", "data": {"dataset_id": "d"}})
    return base.with_changes(**changes) if changes else base


PICTURE_PROFILE = {"sizes": {"short_side_median": 40.0}}


def test_picture_settings_have_keys_of_their_own_and_the_spec_defaults_for_pictures() -> None:
    fields = _by_path(forms.form_fields("small_cnn", task="image_classification"))

    assert fields["training.epochs"].key == "train__img__training__epochs"
    assert forms.field_key("training.epochs") == "train__training__epochs"  # tables keep theirs
    assert fields["image.size"].key == "train__img__image__size"
    assert fields["training.precision"].default == "bf16-mixed"  # what the spec gives pictures
    assert fields["architecture.params.width"].key == "train__arch_small_cnn__width"
    assert "preprocessing.numeric_scaling" not in fields and "data.features" not in fields
    values = {f.path: f.default for f in fields.values() if f.default is not None}
    check = forms.check_values(
        dataset_id="d", target="label", task="image_classification", architecture="small_cnn", values=values
    )
    assert check.spec == _image_spec()


def test_the_picture_size_is_the_spec_s_or_the_automatic_one() -> None:
    assert picture_views.image_size(_image_spec(), PICTURE_PROFILE) == 40
    assert picture_views.image_size(_image_spec(**{"image.size": 96}), PICTURE_PROFILE) == 96
    pretrained = _image_spec(**{"architecture.name": "resnet18", "architecture.params": {"pretrained": True}})
    assert picture_views.image_size(pretrained, PICTURE_PROFILE) == 224


def test_the_picture_time_guess_grows_with_network_size_and_epochs() -> None:
    small = picture_views.estimate_image_time(_image_spec(**{"training.epochs": 10}), 1000, 32)
    resnet = _image_spec(**{"training.epochs": 10, "architecture.name": "resnet50"})
    big = picture_views.estimate_image_time(resnet, 1000, 224)
    assert small.seconds < big.seconds
    assert "10 epochs over about 700 pictures of 32 × 32 px" in small.text
    assert small.text.startswith("Rough guess for an idle machine:") and "twice as long" in small.text
    assert picture_views.estimate_image_time(resnet, 1000, 224, on_gpu=True).seconds < big.seconds / 10
    frozen = resnet.with_changes(**{"architecture.params": {"pretrained": True, "freeze_backbone": True}})
    assert picture_views.estimate_image_time(frozen, 1000, 224).seconds < big.seconds
    assert picture_views.network_gflops("resnet18", {}, 112) == pytest.approx(1.81 / 4)


def test_picture_runs_that_would_fail_at_once_are_said_before(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    wants = _image_spec(**{"architecture.name": "resnet18", "architecture.params": {"pretrained": True}})
    (missing,) = picture_views.image_blockers(wants)
    assert "not on this machine" in missing and "train from scratch" in missing

    weights = tmp_path / "hub" / "checkpoints" / ARCHITECTURES["resnet18"].pretrained_weights
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    assert picture_views.image_blockers(wants) == []
    frozen = wants.with_changes(**{"architecture.params": {"pretrained": False, "freeze_backbone": True}})
    assert "needs pretrained weights" in picture_views.image_blockers(frozen)[0]
    assert picture_views.image_blockers(_image_spec()) == []


def test_risky_values_speak_of_pictures_for_pictures() -> None:
    (advice,) = forms.risky_values(_image_spec(), 40, unit="pictures")
    assert "Only about 28 pictures are left to train on" in advice and "add pictures" in advice
