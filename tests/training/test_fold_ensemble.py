"""'Use all my data': a run trains k fold models and its model averages them. Real tiny training (one
module-scoped fixture trains a 3-fold classifier and a 2-fold regression once), then: the ensemble's
predictions equal the mean of its members' in the bundle (pyfunc in this process), in the runtime (in a
Python process where ``studio`` cannot be imported) and in its ONNX graph (onnxruntime); its test
scores are the averaged model's, each member's are logged beside them; a search's trial keeps its fold
models and is tested once as the ensemble. Plus the refusals and the words."""

from __future__ import annotations

import json
import math
import re
import textwrap
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from studio import jobs, tracking
from studio.core import ensembles
from studio.core.errors import SpecError, TrainingError
from studio.core.runtime import TabularPredictor, TabularPreprocessor
from studio.engine.training import TrainHooks, evaluate_chosen_model, train
from tests.bundle.outside import run_outside
from tests.mlflow_store import new_store
from tests.pages.test_runs_page import run_in_process
from tests.training.conftest import make_table
from tests.training.test_train import make_spec

TOLERANCE = 1e-5


class TrialLike(TrainHooks):
    """A search's trial: no test; records the other fold models' kept scores."""

    runs_test = False

    def __init__(self) -> None:
        self.folds_kept: list[dict[str, float]] | None = None

    def on_folds_kept(self, kept: list[dict[str, float]]) -> None:
        self.folds_kept = kept


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("ensemble")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(tmp / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
        from studio.data import add_csv

        make_table().to_csv(tmp / "tiny.csv", index=False)
        dataset = add_csv(tmp / "tiny.csv", name="tiny")
        changes = {"training.epochs": 2, "data.use_all_data": True}
        classifier = make_spec(dataset.id, "classification", "label", **changes, **{"data.folds": 3})
        regression = make_spec(dataset.id, "regression", "amount", **changes, **{"data.folds": 2})
        trial = TrialLike()
        patch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
        job = run_in_process(classifier)  # through the job worker: the pages read its job
        assert job.state == jobs.SUCCEEDED, job.reason
        as_result = SimpleNamespace(
            run_id=job.mlflow_run_id,
            test_metrics=job.test_metrics,
            quality=job.quality,
            bundle_path=Path(job.bundle_path),
        )
        found = {
            "classification": (classifier, as_result),
            "regression": (regression, train(regression, hooks=trial, bundle_out=tmp / "regression.zip")),
        }
        untested = dict(found["regression"][1].test_metrics)
        chosen = evaluate_chosen_model(regression, tmp / "regression.zip", found["regression"][1].run_id)
        yield {
            "runs": found,
            "trial": trial,
            "untested": untested,
            "chosen": chosen,
            "dataset": dataset,
            "tmp": tmp,
            "probe": make_table(40, seed=7),
            "job": job,
        }
        jobs.stop_scheduler(timeout=5)


def bundle_parts(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    with zipfile.ZipFile(path) as zf:
        info = json.loads(zf.read("artifacts/studio_model.json"))
        with zf.open("artifacts/weights.pt") as file:
            weights = torch.load(file, map_location="cpu", weights_only=True)
    return info, weights


def member_predictions(info: dict[str, Any], weights: dict[str, torch.Tensor], rows: pd.DataFrame) -> list:
    """Each fold model's own predictions, through the runtime with the bundle's preprocessing."""
    network = info["network"]
    found = []
    for number in range(network["members"]):
        prefix = f"members.{number}."
        own = {key[len(prefix) :]: value for key, value in weights.items() if key.startswith(prefix)}
        predictor = TabularPredictor(info["preprocessing"], info["target"], network["member"], own)
        found.append(predictor.predict(rows))
    return found


def mean_of_members(path: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """The mean of the members' probabilities (classification) or values (regression)."""
    info, weights = bundle_parts(path)
    each = member_predictions(info, weights, rows)
    columns = [c for c in each[0].columns if c.startswith(("probability_", "predicted_"))]
    if info["task"] == "classification":
        columns = [c for c in columns if c.startswith("probability_")]
    return sum(frame[columns] for frame in each) / len(each)


def test_the_bundle_and_the_runtime_average_their_fold_models(runs) -> None:
    from studio.bundle import load_bundle

    rows = runs["probe"]
    for task, (spec, result) in runs["runs"].items():
        info, weights = bundle_parts(result.bundle_path)
        assert info["network"]["members"] == spec.data.folds
        assert info["ensemble"]["members"] == spec.data.folds
        members = member_predictions(info, weights, rows)
        first = members[0].filter(like="probability_" if task == "classification" else "predicted_")
        assert not np.allclose(first.to_numpy(), members[1][first.columns].to_numpy())  # distinct models
        expected = mean_of_members(result.bundle_path, rows)
        with load_bundle(result.bundle_path) as bundle:  # the pyfunc model, in this process
            predicted = bundle.predict(rows)
        np.testing.assert_allclose(
            predicted[expected.columns].to_numpy(), expected.to_numpy(), atol=TOLERANCE
        )
        direct = TabularPredictor.from_files(info, str(_weights_file(result.bundle_path, runs["tmp"], task)))
        np.testing.assert_allclose(
            direct.predict(rows)[expected.columns].to_numpy(), expected.to_numpy(), atol=TOLERANCE
        )
        if task == "classification":  # the label is the class of highest mean probability
            classes = info["target"]["classes"]
            best = [classes[i] for i in expected.to_numpy().argmax(axis=1)]
            assert predicted["predicted_label"].tolist() == best


def _weights_file(bundle: Path, tmp: Path, task: str) -> Path:
    out = tmp / f"{task}-weights.pt"
    with zipfile.ZipFile(bundle) as zf:
        out.write_bytes(zf.read("artifacts/weights.pt"))
    return out


RUNNER = textwrap.dedent(
    """
    import importlib.abc, json, sys, zipfile

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("studio", "lightning_modules"):
                raise ImportError(f"{name} cannot be imported in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    import mlflow
    import pandas as pd

    job = json.load(open("job.json"))
    rows = pd.read_csv(job["probe"])
    result = {}
    for task, path in job["bundles"].items():
        zipfile.ZipFile(path).extractall(task)
        result[task] = mlflow.pyfunc.load_model(task).predict(rows).to_dict(orient="list")
    result["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in ("studio", "lightning_modules"))
    json.dump(result, open("result.json", "w"))
    """
)


def test_without_the_studio_the_bundle_predicts_the_mean_of_its_fold_models(runs, tmp_path) -> None:
    probe = tmp_path / "probe.csv"
    runs["probe"].to_csv(probe, index=False)
    bundles = {task: str(result.bundle_path) for task, (_, result) in runs["runs"].items()}
    (tmp_path / "job.json").write_text(json.dumps({"probe": str(probe), "bundles": bundles}))
    run_outside(tmp_path, RUNNER)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["loaded"] == []
    rows = pd.read_csv(probe)
    for task, path in bundles.items():
        expected = mean_of_members(Path(path), rows)
        got = pd.DataFrame(result[task])[expected.columns]
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=TOLERANCE)


def test_the_onnx_graph_averages_the_fold_models(runs) -> None:
    import onnxruntime

    rows = runs["probe"]
    for task, (_, result) in runs["runs"].items():
        info, _ = bundle_parts(result.bundle_path)
        assert info["onnx"]["file"], info["onnx"]
        assert "averages" in info["onnx"]["note"]
        with zipfile.ZipFile(result.bundle_path) as zf:
            graph = zf.read("artifacts/model.onnx")
        session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
        x_num, x_cat = TabularPreprocessor(info["preprocessing"]).transform(rows)
        feed = {"numeric": x_num, "categorical": x_cat}
        out = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})[0]
        expected = mean_of_members(result.bundle_path, rows).to_numpy()
        if task == "classification":
            probabilities = np.exp(out - out.max(axis=1, keepdims=True))
            probabilities /= probabilities.sum(axis=1, keepdims=True)
            np.testing.assert_allclose(probabilities, expected, atol=TOLERANCE)
        else:
            values = out.reshape(-1) * info["target"]["std"] + info["target"]["mean"]
            np.testing.assert_allclose(values, expected.reshape(-1), rtol=1e-5, atol=1e-3)


def test_the_test_scores_are_the_averaged_models_and_each_member_is_logged(runs) -> None:
    from studio.data import get_dataset, load_profile, load_table
    from studio.modalities import modality_for

    spec, result = runs["runs"]["classification"]
    assert result.quality[ensembles.MEMBERS] == 3
    assert result.quality[ensembles.MS_PER_ROW] > result.quality[ensembles.MEMBER_MS_PER_ROW] > 0
    alone = ensembles.member_scores(result.quality, "test/accuracy")
    assert len(alone) == 3
    assert "baseline/test_accuracy" in result.quality or any(
        k.startswith("baseline/") for k in result.quality
    )
    # The test rows are fold 0's, the same for every fold; every fold shares one preprocessing.
    dataset = get_dataset(spec.data.dataset_id)
    prepared = [
        modality_for(spec.task).prepare(
            spec, dataset, load_table(dataset.id), load_profile(dataset.id), fold=f
        )
        for f in range(3)
    ]
    data = prepared[0].data
    assert all((p.data.test_idx == data.test_idx).all() for p in prepared)
    assert all(p.data.preprocessor.state == data.preprocessor.state for p in prepared)
    validation = [set(p.data.val_idx) for p in prepared]
    assert not (validation[0] & validation[1]) and not (validation[1] & validation[2])
    info, _ = bundle_parts(result.bundle_path)
    assert info["preprocessing"] == data.preprocessor.state
    # The run's test accuracy is the bundle's on those rows.
    test_rows = data.frame.iloc[data.test_idx]
    mean = mean_of_members(result.bundle_path, test_rows.drop(columns=["label"]))
    classes = info["target"]["classes"]
    predicted = [classes[i] for i in mean.to_numpy().argmax(axis=1)]
    accuracy = float(np.mean(np.array(predicted) == test_rows["label"].to_numpy()))
    assert result.test_metrics["test/accuracy"] == pytest.approx(accuracy, abs=1e-6)
    run = tracking.get_run(result.run_id)
    assert run.metrics["test/accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert run.metrics[ensembles.member_key(2, "test/accuracy")] == pytest.approx(alone[1])
    assert info["metrics"]["test/accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_a_trial_keeps_its_fold_models_and_is_tested_once_as_the_ensemble(runs) -> None:
    spec, result = runs["runs"]["regression"]
    assert runs["untested"] == {}
    assert runs["trial"].folds_kept is not None and len(runs["trial"].folds_kept) == 1
    assert "val/r2" in runs["trial"].folds_kept[0]
    tested = runs["chosen"].test_metrics
    info, _ = bundle_parts(result.bundle_path)
    assert info["network"]["members"] == 2
    assert info["metrics"]["test/r2"] == pytest.approx(tested["test/r2"])
    from studio.data import get_dataset, load_profile, load_table
    from studio.modalities import modality_for

    dataset = get_dataset(spec.data.dataset_id)
    data = (
        modality_for(spec.task).prepare(spec, dataset, load_table(dataset.id), load_profile(dataset.id)).data
    )
    test_rows = data.frame.iloc[data.test_idx]
    values = mean_of_members(result.bundle_path, test_rows.drop(columns=["amount"])).to_numpy().reshape(-1)
    truth = test_rows["amount"].to_numpy()
    mae = float(np.mean(np.abs(values - truth)))
    assert tested["test/mae"] == pytest.approx(mae, rel=1e-4)


def test_fold_models_must_fit_the_split_and_one_device() -> None:
    base = {"task": "classification", "data": {"dataset_id": "x", "target": "y", "use_all_data": True}}
    with pytest.raises(SpecError, match="at most 5 fold models"):
        make = {**base, "data": {**base["data"], "folds": 6}}
        from studio.core.spec import RunSpec

        RunSpec.from_dict(make)
    with pytest.raises(SpecError, match="one device"):
        RunSpec.from_dict({**base, "training": {"devices": "2"}})
    RunSpec.from_dict({**base, "data": {**base["data"], "folds": 6, "use_all_data": False}})  # off: no limit


def test_a_kind_without_fold_models_refuses_the_switch_in_plain_words(runs) -> None:
    with pytest.MonkeyPatch.context() as patch:
        tmp = runs["tmp"]
        patch.setenv("STUDIO_HOME", str(tmp / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
        from studio.modalities import modality_for

        # tables and texts have fold models; a kind without them (pictures, language models) refuses
        patch.delattr(type(modality_for("classification")), "ensembles")
        spec = make_spec(runs["dataset"].id, "classification", "label", **{"data.use_all_data": True})
        with pytest.raises(TrainingError, match="works for tables and texts only") as caught:
            train(spec)
    assert "turn the switch off" in str(caught.value)


def test_the_cli_flag_turns_the_switch_on_and_a_small_table_starts_with_it(runs) -> None:
    import argparse

    from studio.cli.spec import add_train_options, spec_from_args

    parser = argparse.ArgumentParser()
    add_train_options(parser)
    with pytest.MonkeyPatch.context() as patch:
        tmp = runs["tmp"]
        patch.setenv("STUDIO_HOME", str(tmp / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
        spec = spec_from_args(
            parser.parse_args(["--data", runs["dataset"].id, "--target", "label", "--folds", "4"])
        )
        plain = spec_from_args(parser.parse_args(["--data", runs["dataset"].id, "--target", "label"]))
        off = ["--data", runs["dataset"].id, "--target", "label", "--set", "data.use_all_data=false"]
        one = spec_from_args(parser.parse_args(off))
    assert spec.data.use_all_data and spec.data.folds == 4
    # a 240-row table starts with five fold models (studio.modalities.fold_models_by_default); asked, one
    assert plain.data.use_all_data and plain.data.folds == 5
    assert not one.data.use_all_data


def test_the_words_name_the_ensemble_and_its_cost(runs) -> None:
    _, result = runs["runs"]["classification"]
    outcome = {**result.test_metrics, **result.quality}
    said = ensembles.lines(outcome)
    assert said[0].startswith("This model is an ensemble of 3 fold models; each prediction runs all 3 (≈")
    assert "ms per row measured" in said[0]
    assert said[1].startswith("Alone, its fold models scored ")
    assert f"averaged into one model, {result.test_metrics['test/accuracy']:.3f}" in said[1]
    assert ensembles.short_label(result.quality) == "ensemble of 3"
    assert ensembles.lines({"test/accuracy": 0.9}) == [] and ensembles.short_label({}) == ""
    assert ensembles.cost_sentence({ensembles.MEMBERS: 5.0}) == (
        "This model is an ensemble of 5 fold models; each prediction runs all 5 (≈5× the time of one)."
    )
    assert not math.isnan(result.quality[ensembles.MS_PER_ROW])


def _home(patch: pytest.MonkeyPatch, tmp: Path) -> None:
    patch.setenv("STUDIO_HOME", str(tmp / "home"))
    patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
    patch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)


def test_the_run_page_and_the_runs_list_say_it_is_an_ensemble_and_what_it_costs(runs) -> None:
    from streamlit.testing.v1 import AppTest

    page = str(Path(__file__).resolve().parents[2] / "pages" / "runs.py")
    job = runs["job"]
    with pytest.MonkeyPatch.context() as patch:
        _home(patch, runs["tmp"])
        at = AppTest.from_file(page, default_timeout=60)
        at.query_params["job"] = job.id
        at.run()
        assert not at.exception
        said = [element.value for element in at.info]
        assert any(
            text.startswith("This model is an ensemble of 3 fold models; each prediction runs all 3 (≈")
            and "ms per row measured" in text
            for text in said
        ), said
        assert any(text.startswith("Alone, its fold models scored") for text in said), said
        listing = AppTest.from_file(page, default_timeout=60).run()
        assert not listing.exception
        assert any("ensemble of 3" in element.value for element in listing.markdown)


def test_jobs_show_and_list_mention_the_ensemble(runs, capsys) -> None:
    from studio.cli.main import main

    job = runs["job"]
    with pytest.MonkeyPatch.context() as patch:
        _home(patch, runs["tmp"])
        assert main(["jobs", "show", job.id]) == 0
        shown = capsys.readouterr().out
        assert main(["jobs", "list"]) == 0
        listed = capsys.readouterr().out
    assert re.search(
        r"\nensemble +This model is an ensemble of 3 fold models; each prediction runs all 3", shown
    )
    assert re.search(r"\nensemble +Alone, its fold models scored", shown)
    assert "(ensemble of 3)" in listed


def test_the_train_form_has_the_switch_its_time_guess_and_its_limit(studio_home, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from studio import data as datasets

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
    studio_home.mkdir(parents=True, exist_ok=True)
    datasets.add_sample("wine")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=60).run()
    at.switch_page("pages/train.py").run()
    switch = at.checkbox(key="train__data__use_all_data")
    # wine (178 rows) starts with the switch ticked (a small table) and the guess counts the fold models
    assert switch.label == "Use all my data" and switch.value is True
    (how_long,) = [m.value for m in at.markdown if "**How long:**" in m.value]
    assert "5 fold models, each" in how_long
    switch.uncheck().run()
    (how_long,) = [m.value for m in at.markdown if "**How long:**" in m.value]
    assert "fold models" not in how_long
    at.checkbox(key="train__data__use_all_data").check().run()
    at.number_input(key="train__data__folds").set_value(6).run()
    assert not at.exception
    assert any("at most 5 fold models" in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="train_submit").disabled
    assert jobs.list_jobs() == []
