"""The search space: derived from the spec per data kind and network, narrowed by a user, turned into
valid trial specs (no training here)."""

from __future__ import annotations

import pytest

from studio.core.errors import SpecError
from studio.core.spec import RunSpec
from studio.search.space import (
    AUGMENTATION,
    SearchSpace,
    augmentation_settings,
    default_space,
    narrow,
    parse_narrowing,
    starting_point,
    trial_spec,
)


def table_spec(**sections) -> RunSpec:
    return RunSpec.from_dict(
        {"task": "classification", "data": {"dataset_id": "ds-x", "target": "y"}, **sections}
    )


def image_spec() -> RunSpec:
    return RunSpec.from_dict({"task": "image_classification", "data": {"dataset_id": "ds-pics"}})


class FakeTrial:
    """Answers every suggestion with the range's top (or the last choice), as Optuna's API is called."""

    def __init__(self) -> None:
        self.asked: dict[str, tuple] = {}

    def suggest_categorical(self, name, choices):
        self.asked[name] = ("choice", tuple(choices))
        return choices[-1]

    def suggest_int(self, name, low, high, log=False):
        self.asked[name] = ("int", low, high, log)
        return high

    def suggest_float(self, name, low, high, log=False):
        self.asked[name] = ("float", low, high, log)
        return high


def test_table_space_has_the_issue_s_settings_within_the_spec_s_limits() -> None:
    space = default_space(table_spec(), train_rows=120)
    assert space.names == [
        "architecture.name",
        "architecture.params.hidden_layers",
        "architecture.params.width",
        "architecture.params.dropout",
        "optimizer.name",
        "optimizer.learning_rate",
        "optimizer.weight_decay",
        "training.batch_size",
    ]
    rate = space.get("optimizer.learning_rate")
    assert rate.log and rate.low == pytest.approx(1e-4) and rate.high == pytest.approx(0.1)
    assert rate.title == "Learning rate"  # read from the spec's field
    assert space.get("architecture.params.width").when == ("architecture.name", ("mlp",))
    # no batch larger than half the training rows (60)
    assert space.get("training.batch_size").choices == (16, 32)


def test_a_learning_rate_suggestion_centres_the_range() -> None:
    rate = default_space(table_spec(), learning_rate_centre=0.003).get("optimizer.learning_rate")
    assert (rate.low, rate.high) == pytest.approx((0.0003, 0.03))


def test_picture_space_tries_networks_with_weights_here_freezing_and_augmentation(monkeypatch) -> None:
    import studio.core.pretrained as pretrained

    monkeypatch.setattr(pretrained, "weights_available", lambda name: name == "resnet18")
    space = default_space(image_spec(), train_rows=400)
    assert space.get("architecture.name").choices == ("small_cnn", "resnet18")
    assert space.get("architecture.params.freeze_backbone").when == ("architecture.name", ("resnet18",))
    assert space.get(AUGMENTATION) is not None
    assert space.get("training.batch_size").choices == (16, 32, 64)
    values = suggest_with(FakeTrial(), space, image_spec())
    assert values["architecture.name"] == "resnet18" and "architecture.params.width" not in values
    spec = trial_spec(image_spec(), values)
    assert spec.architecture.name == "resnet18" and spec.architecture.params["freeze_backbone"] is True
    assert spec.image.rotation_degrees == 30 and spec.image.crop_scale == 0.5


def suggest_with(trial, space, spec):
    from studio.search.space import suggest

    return suggest(trial, space, spec)


def test_conditional_settings_are_asked_only_when_they_apply() -> None:
    space = default_space(table_spec(), train_rows=1000)
    trial = FakeTrial()  # picks the last network choice: linear
    values = suggest_with(trial, space, table_spec())
    assert values["architecture.name"] == "linear"
    assert not any(name.startswith("architecture.params") for name in trial.asked)
    spec = trial_spec(table_spec(), values, name="t · trial 1")
    assert spec.architecture.name == "linear" and spec.name == "t · trial 1"
    assert spec.optimizer.learning_rate == pytest.approx(0.1) and spec.training.batch_size == 256


def test_the_first_trial_is_the_spec_s_own_settings() -> None:
    spec = table_spec(
        optimizer={"learning_rate": 0.003}, architecture={"name": "mlp", "params": {"width": 64}}
    )
    space = default_space(spec, train_rows=140)
    start = starting_point(space, spec, train_rows=140)
    assert start["optimizer.learning_rate"] == pytest.approx(0.003)
    assert start["architecture.params.width"] == 64
    assert start["training.batch_size"] == 32  # automatic (0) for 140 rows is 32
    assert trial_spec(spec, start).model_dump(exclude={"training"}) == spec.model_dump(exclude={"training"})


def test_narrowing_from_yaml_ranges_choices_and_fixed_values() -> None:
    space = default_space(table_spec(), train_rows=1000)
    narrowing = parse_narrowing(
        "optimizer.learning_rate: {low: 0.0005, high: 0.005}\n"
        "architecture.name: [mlp]\n"
        "training.batch_size: 64\n"
        "architecture.params.width: [32, 256]\n"
    )
    narrowed = narrow(space, narrowing)
    assert (narrowed.get("optimizer.learning_rate").low, narrowed.get("optimizer.learning_rate").high) == (
        0.0005,
        0.005,
    )
    assert narrowed.get("architecture.name").choices == ("mlp",)
    assert narrowed.get("training.batch_size") is None and narrowed.fixed == {"training.batch_size": 64}
    assert (
        narrowed.get("architecture.params.width").low,
        narrowed.get("architecture.params.width").high,
    ) == (
        32,
        256,
    )
    values = suggest_with(FakeTrial(), narrowed, table_spec())
    assert values["training.batch_size"] == 64
    # the YAML a user edits round-trips to the same space
    assert narrow(space, parse_narrowing(narrowed.narrowing_text())) == narrowed
    assert SearchSpace.from_dict(narrowed.to_dict()) == narrowed


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("optimizer.momentum: {low: 0.1, high: 0.9}", "has no setting 'optimizer.momentum'"),
        ("optimizer.learning_rate: {low: 0.1, high: 0.01}", "low (0.1) is above high (0.01)"),
        ("optimizer.learning_rate: {low: 0, high: 0.01}", "log scale, so low must be above 0"),
        ("optimizer.name: [adagrad]", "cannot be 'adagrad'"),
        ("optimizer.name: {low: 1, high: 2}", "is a choice"),
        ("architecture.params.width: [wide]", "needs numbers"),
    ],
)
def test_a_wrong_narrowing_is_one_plain_sentence(text: str, says: str) -> None:
    with pytest.raises(SpecError, match=None) as err:
        narrow(default_space(table_spec()), parse_narrowing(text))
    assert says in str(err.value)


def test_augmentation_strength_sets_the_picture_changes_together() -> None:
    assert augmentation_settings(0) == {
        "image.rotation_degrees": 0.0,
        "image.crop_scale": 1.0,
        "image.color_jitter": 0.0,
    }
    assert augmentation_settings(0.5)["image.crop_scale"] == 0.75


def test_text_space_tries_the_bag_of_words_settings_and_makes_valid_trial_specs() -> None:
    spec = RunSpec.from_dict({"task": "text_classification", "data": {"dataset_id": "ds-text", "target": "y"}})
    space = default_space(spec, train_rows=1000)
    names = {dim.path for dim in space.dimensions}
    assert {
        "architecture.name",
        "architecture.params.embedding_dim",
        "architecture.params.word_ngrams",
        "architecture.params.hidden",
        "architecture.params.dropout",
        "optimizer.learning_rate",
        "training.batch_size",
    } <= names
    first = starting_point(space, spec, train_rows=1000)
    assert first["architecture.params.embedding_dim"] == 64 and first["architecture.params.word_ngrams"] == 2
    top = trial_spec(spec, {**first, "architecture.params.embedding_dim": 256, "architecture.params.hidden": 256})
    assert top.task == "text_classification" and top.architecture.params["hidden"] == 256
