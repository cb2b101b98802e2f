"""A regression target that looks like money is learned on a log scale: the rule on named examples, the
Data page's words and the setting that turns it off; then one real tiny training whose test R² is the
bundle's on the original scale, and whose bundle predicts the same in this process, in a Python process
where the studio cannot be imported, and in its ONNX graph (which gives the target back in its units)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from studio import bundle, jobs
from studio.core.runtime import TabularPreprocessor, encode_target, fit_target, target_units, with_log_range
from studio.core.spec import RunSpec
from studio.modalities.tabular.profile import column_readings, log_target, profile_table
from tests.bundle.outside import run_outside
from tests.bundle.test_bundle import RUNNER, run_onnx
from tests.mlflow_store import new_store
from tests.pages.test_runs_page import run_in_process


def house_table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Houses and their prices: a price is exp(a straight line in the inputs), so it spans orders of
    magnitude with a long tail, as real prices do."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(40, 250, n)
    rooms = rng.integers(1, 7, n)
    town = rng.choice(["north", "south", "east", "west"], n)
    lift = pd.Series(town).map({"north": 0.6, "south": 0.0, "east": 0.3, "west": -0.3}).to_numpy()
    price = np.exp(10 + area / 60 + 0.1 * rooms + lift + rng.normal(0, 0.1, n)).round(-2)
    return pd.DataFrame({"area": area.round(1), "rooms": rooms, "town": town, "price": price})


def test_money_is_learned_on_a_log_scale_and_a_symmetric_number_is_not() -> None:
    from sklearn.datasets import load_diabetes

    assert log_target(house_table()["price"].to_numpy())
    rng = np.random.default_rng(1)
    assert log_target(rng.lognormal(10, 1, 500))  # salaries
    assert not log_target(load_diabetes().target.astype(float))  # skewness 0.4
    assert not log_target(rng.normal(100, 15, 500))
    spread = rng.lognormal(10, 1, 500)
    assert not log_target(spread - spread.mean())  # negative values: not money
    assert not log_target(np.append(spread, -1.0))
    assert not log_target(spread[:10])  # too few values to tell


def test_the_target_state_learns_log1p_and_gives_units_back() -> None:
    prices = pd.Series([1e4, 2e5, 3e6, np.nan], name="price")
    state = fit_target(prices, "regression", log=True)
    logs = np.log1p([1e4, 2e5, 3e6])
    assert state["log_scale"] is True
    assert (state["mean"], state["std"]) == pytest.approx((logs.mean(), logs.std()))
    scaled = encode_target(prices.iloc[:3], state)
    np.testing.assert_allclose(scaled, (logs - logs.mean()) / logs.std(), rtol=1e-5)
    np.testing.assert_allclose(target_units(scaled, state), [1e4, 2e5, 3e6], rtol=1e-5)
    assert "log_scale" not in fit_target(prices, "regression")
    kept = with_log_range(state, prices.iloc[:2])  # learned from the two smaller prices only
    assert kept["log_range"] == pytest.approx(list(np.log1p([1e4, 2e5])))
    far = (np.log1p([1e3, 1e9]) - kept["mean"]) / kept["std"]  # beyond the values learned from
    np.testing.assert_allclose(target_units(far, kept), [1e4, 2e5], rtol=1e-9)  # as a tree would


def test_the_data_page_says_so_for_a_money_target_only() -> None:
    frame = house_table()
    profile = profile_table(frame)
    column = next(c for c in profile["columns"] if c["name"] == "price")
    assert column["log_target"] and not column["log_scale"]  # as a target, not as an input
    said = [r["message"] for r in column_readings(profile, "price", "regression") if r["column"] == "price"]
    assert len(said) == 1 and "log scale" in said[0] and "back in the units of 'price'" in said[0]
    assert not [r for r in column_readings(profile, "price", "classification") if r["column"] == "price"]
    assert not [r for r in column_readings(profile, "area", "regression") if r["column"] == "area"]


def test_the_setting_turns_it_off_and_classification_never_uses_it() -> None:
    from studio.modalities.tabular.prepare import plan_features

    frame = house_table()
    profile = profile_table(frame)

    def plan(**changes: Any) -> Any:
        spec = RunSpec(task="regression", data={"dataset_id": "houses", "target": "price"})
        return plan_features(frame, profile, spec.with_changes(**changes) if changes else spec)

    assert plan().log_target
    assert not plan(**{"preprocessing.log_target": False}).log_target
    assert not plan(**{"data.target": "area"}).log_target  # uniform: no long tail


# --------------------------------------------------------------------------- one real tiny training
def houses_spec(tmp: Path, patch: pytest.MonkeyPatch, epochs: int, **data: Any) -> RunSpec:
    """A studio home and MLflow store under ``tmp`` (set with ``patch``), the houses added as a data set,
    and a regression spec on their price (``data`` adds to its data section)."""
    patch.setenv("STUDIO_HOME", str(tmp / "home"))
    patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
    from studio.data import add_csv

    house_table().to_csv(tmp / "houses.csv", index=False)
    dataset = add_csv(tmp / "houses.csv", name="houses")
    return RunSpec.from_dict(
        {
            "task": "regression",
            "data": {"dataset_id": dataset.id, "target": "price", **data},
            "training": {"epochs": epochs, "batch_size": 32},
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("log_target")
    with pytest.MonkeyPatch.context() as patch:
        from studio.data import get_dataset, load_profile, load_table
        from studio.engine.training import train
        from studio.modalities import modality_for

        spec = houses_spec(tmp, patch, epochs=12)
        dataset = get_dataset(spec.data.dataset_id)
        result = train(spec, bundle_out=tmp / "houses.zip")
        table, profile = load_table(dataset.id), load_profile(dataset.id)
        data = modality_for(spec.task).prepare(spec, dataset, table, profile).data
        yield {
            "result": result,
            "path": tmp / "houses.zip",
            "test": data.frame.iloc[data.test_idx],
            "val": data.frame.iloc[data.val_idx],
            "train": data.frame.iloc[data.train_idx],
            "learned_from": data.frame.iloc[np.union1d(data.train_idx, data.val_idx)],
            "tmp": tmp,
        }


def test_the_test_r2_is_the_bundles_on_the_original_scale(trained) -> None:
    result, test = trained["result"], trained["test"]
    assert result.status == "FINISHED"
    with bundle.load_bundle(trained["path"]) as loaded:
        assert loaded.info["target"]["log_scale"] is True
        low, high = loaded.info["target"]["log_range"]
        learned_from = trained["learned_from"]["price"]  # the training and validation rows, never the test
        assert (low, high) == pytest.approx((np.log1p(learned_from.min()), np.log1p(learned_from.max())))
        predicted = loaded.predict(test.drop(columns=["price"]))["predicted_price"].to_numpy()
    truth = test["price"].to_numpy()
    assert predicted.min() > 0 and np.median(predicted) == pytest.approx(np.median(truth), rel=0.5)
    r2 = 1 - ((truth - predicted) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert result.test_metrics["test/r2"] == pytest.approx(r2, abs=1e-4)
    assert r2 > 0.5  # 12 epochs on 204 rows of a clean log-linear price


def test_the_bundle_predicts_the_same_without_the_studio_and_in_onnx(trained) -> None:
    rows = trained["test"].drop(columns=["price"]).reset_index(drop=True)
    work = trained["tmp"] / "elsewhere"
    work.mkdir()
    probe = work / "data.csv"
    rows.to_csv(probe, index=False)
    rows = pd.read_csv(probe)  # the runner reads the same CSV
    (work / "model.zip").write_bytes(trained["path"].read_bytes())
    bundles = {"houses": str(work / "model.zip")}
    job = {"snippet": bundle.python_snippet("model.zip"), "probe": str(probe), "bundles": bundles}
    (work / "job.json").write_text(json.dumps(job))
    run_outside(work, RUNNER)
    outside = json.loads((work / "result.json").read_text())
    assert outside["attempts"] == [] and outside["loaded"] == []
    with zipfile.ZipFile(trained["path"]) as zf:
        readme = zf.read(next(n for n in zf.namelist() if n.endswith("README.md"))).decode()
    assert "`price` looks like money or a count" in readme and "Duan's smearing" in readme
    with bundle.load_bundle(trained["path"]) as loaded:
        expected = loaded.predict(rows)
        assert "own units" in loaded.info["onnx"]["note"] and "× target.smear − 1" in loaded.info["onnx"]["note"]
        x_num, x_cat = TabularPreprocessor(loaded.info["preprocessing"]).transform(rows)
        from_onnx = run_onnx(loaded.onnx_path, x_num, x_cat).reshape(-1)
    assert list(outside["houses"]) == list(expected.columns)
    np.testing.assert_allclose(outside["houses"]["predicted_price"], expected["predicted_price"], rtol=1e-6)
    assert outside["houses"]["prediction_warning"] == expected["prediction_warning"].tolist()
    assert expected["predicted_price"].min() > 1000  # the price's units, not its log
    np.testing.assert_allclose(from_onnx, expected["predicted_price"].to_numpy(), rtol=1e-4)


# --------------------------------------------------------------------------- smearing (Duan's)
def test_the_smearing_factor_on_named_numbers() -> None:
    from studio.core.runtime import SMEAR_MAX, SMEAR_MIN_ROWS, log_residuals, smearing

    half = np.log([2.0, 0.5] * 10)  # twice and half the prediction, 20 rows: mean of exp = (2 + 0.5) / 2
    assert smearing(half) == pytest.approx(1.25)
    assert smearing(np.append(half, [np.nan, np.inf])) == pytest.approx(1.25)  # not-finite rows left out
    assert smearing(half[: SMEAR_MIN_ROWS - 1]) == 1.0  # too few rows: no factor
    assert smearing(np.full(30, -0.2)) == 1.0  # predicts too high on average: not what smearing corrects
    assert smearing(np.full(30, 3.0)) == SMEAR_MAX  # exp(3) = 20: a few rows far off, held at the cap
    state = {"mean": 10.0, "std": 2.0, "log_range": [9.0, 13.0]}
    # truth 12 and 9 on the log scale (labels 1 and -0.5); predictions 11 and 7, the second kept at 9
    np.testing.assert_allclose(log_residuals([0.5, -1.5], [1.0, -0.5], state), [1.0, 0.0])


def test_predictions_are_scaled_by_the_factor_and_an_old_state_is_unchanged() -> None:
    import torch

    from studio.core.runtime import units_of

    old = {"name": "price", "task": "regression", "mean": 0.0, "std": 1.0, "log_scale": True}
    smeared = old | {"smear": 1.25, "smear_rows": 40}
    outputs = np.log([10.0, 100.0])
    assert target_units(outputs, old).tolist() == np.expm1(outputs).tolist()  # exactly as before
    np.testing.assert_allclose(target_units(outputs, smeared), [12.5 - 1, 125 - 1])
    in_torch = torch.tensor(outputs, dtype=torch.float64)
    np.testing.assert_allclose(units_of(in_torch, smeared).numpy(), [11.5, 124.0])
    np.testing.assert_allclose(units_of(in_torch, old).numpy(), [9.0, 99.0])
    plain = {"name": "y", "task": "regression", "mean": 5.0, "std": 2.0, "smear": 1.25}  # not log: ignored
    np.testing.assert_allclose(target_units(np.array([1.0]), plain), [7.0])


def test_the_run_says_the_factor_in_one_sentence() -> None:
    from studio.core import quality
    from studio.core.runtime import SMEAR_MIN_ROWS

    assert quality.SMEAR_MIN_ROWS == SMEAR_MIN_ROWS
    said = quality.smear_sentence({quality.SMEAR: 1.0712, quality.SMEAR_ROWS: 36.0})
    assert said == (
        "Predictions are scaled by 1.07 to turn the log-scale model's median-like value into an average "
        "(smearing, measured on 36 validation rows)."
    )
    few = quality.smear_sentence({quality.SMEAR: 1.0, quality.SMEAR_ROWS: 12.0})
    assert few is not None and "12 validation rows are too few" in few
    assert quality.smear_sentence({quality.SMEAR: 1.0, quality.SMEAR_ROWS: 50.0}) is None
    assert quality.smear_sentence({}) is None  # not a log-scale target, or a run from before


def without_smear(path: Any, out: Any) -> Any:
    """A copy of a bundle as one written before smearing: its target has no ``smear``."""
    with zipfile.ZipFile(path) as zf, zipfile.ZipFile(out, "w") as copy:
        for item in zf.infolist():
            data = zf.read(item)
            if item.filename.endswith("artifacts/studio_model.json"):
                info = json.loads(data)
                info["target"].pop("smear")
                info["target"].pop("smear_rows")
                data = json.dumps(info).encode()
            copy.writestr(item, data)
    return out


def test_the_run_smears_its_predictions_and_an_old_bundle_does_not(trained) -> None:
    from studio.core import quality

    result, test = trained["result"], trained["test"]
    with bundle.load_bundle(trained["path"]) as loaded:
        target = loaded.info["target"]
        rows = test.drop(columns=["price"])
        smeared = loaded.predict(rows)["predicted_price"].to_numpy()
    assert 1.0 < target["smear"] < 1.5  # errors of ~0.1-0.3 on the log scale: a few per cent
    assert target["smear_rows"] == result.quality[quality.SMEAR_ROWS] > 20  # the validation rows
    assert result.quality[quality.SMEAR] == pytest.approx(target["smear"])
    with bundle.load_bundle(without_smear(trained["path"], trained["tmp"] / "old.zip")) as old:
        plain = old.predict(rows)["predicted_price"].to_numpy()
    np.testing.assert_allclose(smeared, (plain + 1) * target["smear"] - 1, rtol=1e-6)
    truth = test["price"].to_numpy()
    r2_plain = 1 - ((truth - plain) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert result.test_metrics["test/r2"] != pytest.approx(r2_plain, abs=1e-6)  # the test scored smeared
    # the guess it is compared with (the training rows' mean price) and the model's RMSE: both in prices,
    # the truth never smeared
    guess = trained["train"]["price"].mean()
    assert result.quality["baseline/test_rmse"] == pytest.approx(np.sqrt(((truth - guess) ** 2).mean()), rel=1e-4)
    assert result.test_metrics["test/rmse"] == pytest.approx(np.sqrt(((truth - smeared) ** 2).mean()), rel=1e-4)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A two-fold ensemble ('use all my data') on the houses, tested as the run does, then as a search's
    chosen model is (``evaluate_chosen_model``, from its bundle)."""
    tmp = tmp_path_factory.mktemp("log_ensemble")
    with pytest.MonkeyPatch.context() as patch:
        from studio.engine.training import evaluate_chosen_model

        spec = houses_spec(tmp, patch, epochs=6, use_all_data=True, folds=2)
        patch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
        job = run_in_process(spec)  # through the job worker: the run page reads its job
        assert job.state == jobs.SUCCEEDED, job.reason
        path = Path(job.bundle_path)
        result = SimpleNamespace(run_id=job.mlflow_run_id, test_metrics=job.test_metrics, quality=job.quality)
        ran = {"info": json.loads(zipfile.ZipFile(path).read("artifacts/studio_model.json"))}
        chosen = evaluate_chosen_model(spec, path, result.run_id)
        yield {"spec": spec, "result": result, "path": path, "chosen": chosen, "job": job, **ran}
        jobs.stop_scheduler(timeout=5)


def test_a_fold_ensemble_smears_with_its_members_own_validation_rows(ensemble) -> None:
    import torch

    from studio.core import quality
    from studio.core.runtime import TabularPredictor, log_residuals, smearing
    from studio.data import get_dataset, load_profile, load_table
    from studio.modalities import modality_for

    spec, info, result = ensemble["spec"], ensemble["info"], ensemble["result"]
    target = info["target"]
    with zipfile.ZipFile(ensemble["path"]) as zf, zf.open("artifacts/weights.pt") as file:
        weights = torch.load(file, map_location="cpu", weights_only=True)
    dataset = get_dataset(spec.data.dataset_id)
    residuals, rows = [], 0
    for fold in range(2):  # member f on fold f's validation rows, which it never trained on
        data = modality_for(spec.task).prepare(
            spec, dataset, load_table(dataset.id), load_profile(dataset.id), fold=fold
        ).data
        own = {k.split(".", 2)[2]: v for k, v in weights.items() if k.startswith(f"members.{fold}.")}
        member = TabularPredictor(info["preprocessing"], target, info["network"]["member"], own)
        *inputs, y = data.tensors["val"]
        with torch.no_grad():
            out = member.net(*inputs).numpy()
        residuals.append(log_residuals(out, y.numpy(), target))
        rows += len(y)
    assert target["smear"] == pytest.approx(smearing(np.concatenate(residuals)), rel=1e-5)
    assert target["smear"] > 1.0 and target["smear_rows"] == rows
    assert result.quality[quality.SMEAR] == pytest.approx(target["smear"])
    # the test scores are the smeared ensemble's, and a search's chosen model keeps the bundle's factor
    data = modality_for(spec.task).prepare(spec, dataset, load_table(dataset.id), load_profile(dataset.id)).data
    test = data.frame.iloc[data.test_idx]
    with bundle.load_bundle(ensemble["path"]) as loaded:
        assert loaded.info["target"]["smear"] == target["smear"]  # written again by the chosen-model test
        predicted = loaded.predict(test.drop(columns=["price"]))["predicted_price"].to_numpy()
    truth = test["price"].to_numpy()
    r2 = 1 - ((truth - predicted) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert result.test_metrics["test/r2"] == pytest.approx(r2, abs=1e-4)
    assert ensemble["chosen"].test_metrics["test/r2"] == pytest.approx(r2, abs=1e-4)


def test_a_rows_explanation_adds_up_to_the_smeared_prediction(trained) -> None:
    import torch

    from studio.core.runtime import TabularPredictor
    from studio.modalities.tabular.explain import row_contributions

    with zipfile.ZipFile(trained["path"]) as zf:
        info = json.loads(zf.read("artifacts/studio_model.json"))
        with zf.open("artifacts/weights.pt") as file:
            weights = torch.load(file, map_location="cpu", weights_only=True)
    predictor = TabularPredictor(info["preprocessing"], info["target"], info["network"], weights)
    rows = trained["test"].drop(columns=["price"])
    predicted = predictor.predict(rows)["predicted_price"].to_numpy()
    found = row_contributions(predictor, rows.iloc[:1], rows)
    assert found["prediction"] == pytest.approx(predicted[0], rel=1e-5)  # in units, smeared
    assert found["baseline"] + sum(found["contributions"].values()) == pytest.approx(
        found["prediction"], rel=0.02
    )


def test_the_small_versions_predictor_reads_the_graphs_output_as_units(trained) -> None:
    """The small (8-bit) version predicts with the bundle's ONNX graph, which for a log-scale target
    already ends in the target's units, smearing included: it must not go back from the log scale again."""
    from studio.core.runtime import OnnxNetwork, OnnxTabularPredictor

    rows = trained["test"].drop(columns=["price"])
    with bundle.load_bundle(trained["path"]) as loaded:
        expected = loaded.predict(rows)["predicted_price"].to_numpy()
        info = loaded.info
        small = OnnxTabularPredictor(
            info["preprocessing"], info["target"], OnnxNetwork(str(loaded.onnx_path), info["network"])
        )
        np.testing.assert_allclose(small.predict(rows)["predicted_price"].to_numpy(), expected, rtol=1e-4)


def test_the_run_page_and_jobs_show_say_the_factor(ensemble) -> None:
    from streamlit.testing.v1 import AppTest

    from studio.core import quality

    job = ensemble["job"]
    factor, rows = ensemble["info"]["target"]["smear"], ensemble["info"]["target"]["smear_rows"]
    said = f"Predictions are scaled by {factor:.3g} to turn the log-scale model's median-like value"
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "pages" / "runs.py"), default_timeout=60)
    at.query_params["job"] = job.id
    at.run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert any(c.startswith(said) and f"measured on {rows} validation rows" in c for c in captions), captions
    lines = dict(quality.outcome_lines(job.spec, job.outcome))
    assert lines["smearing"].startswith(said)


def test_the_validation_score_set_against_the_test_score_is_smeared_too(trained) -> None:
    """The test R² scores smeared predictions; the validation R² it is compared with (a wide gap is said on
    the run page) is the smeared predictions' on the validation rows, not the curves' unsmeared one."""
    from studio.core import quality

    result, val = trained["result"], trained["val"]
    rows, truth = val.drop(columns=["price"]), val["price"].to_numpy()
    with bundle.load_bundle(trained["path"]) as loaded:
        smeared = loaded.predict(rows)["predicted_price"].to_numpy()
    with bundle.load_bundle(without_smear(trained["path"], trained["tmp"] / "old_val.zip")) as old:
        plain = old.predict(rows)["predicted_price"].to_numpy()

    def r2(predicted: np.ndarray) -> float:
        return 1 - ((truth - predicted) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()

    assert result.quality[quality.SMEARED_VAL_R2] == pytest.approx(r2(smeared), abs=1e-4)
    assert result.quality["kept/val_r2"] == pytest.approx(r2(plain), abs=1e-3)  # the curves': before the factor
    outcome = {**result.quality, "test/r2": result.quality[quality.SMEARED_VAL_R2] - 0.5}
    said = quality.validation_gap_sentence(outcome, "r2")
    assert said is not None and f"R² {result.quality[quality.SMEARED_VAL_R2]:.3f} on the validation rows" in said


def test_the_gap_sentence_takes_the_smeared_validation_r2_where_there_is_one() -> None:
    from studio.core import quality

    metrics = {"kept/val_r2": 0.60, "test/r2": 0.70, quality.VAL_ROWS: 400.0, quality.TEST_ROWS: 400.0}
    assert "R² 0.600 on the validation rows against 0.700" in quality.validation_gap_sentence(metrics, "r2")
    smeared = {**metrics, quality.SMEARED_VAL_R2: 0.69}  # the same rows, predictions smeared as the test's
    assert quality.validation_gap_sentence(smeared, "r2") is None
