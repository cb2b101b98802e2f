"""A regression target that looks like money is learned on a log scale: the rule on named examples, the
Data page's words and the setting that turns it off; then one real tiny training whose test R² is the
bundle's on the original scale, and whose bundle predicts the same in this process, in a Python process
where the studio cannot be imported, and in its ONNX graph (which gives the target back in its units)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import pytest

from studio import bundle
from studio.core.runtime import TabularPreprocessor, encode_target, fit_target, target_units, with_log_range
from studio.core.spec import RunSpec
from studio.modalities.tabular.profile import column_readings, log_target, profile_table
from tests.bundle.test_bundle import RUNNER, run_onnx
from tests.mlflow_store import new_store


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
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("log_target")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(tmp / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
        from studio.data import add_csv, get_dataset, load_profile, load_table
        from studio.engine.training import train
        from studio.modalities import modality_for

        house_table().to_csv(tmp / "houses.csv", index=False)
        dataset = add_csv(tmp / "houses.csv", name="houses")
        spec = RunSpec.from_dict(
            {
                "task": "regression",
                "data": {"dataset_id": dataset.id, "target": "price"},
                "training": {"epochs": 12, "batch_size": 32},
            }
        )
        result = train(spec, bundle_out=tmp / "houses.zip")
        table, profile = load_table(dataset.id), load_profile(dataset.id)
        data = modality_for(spec.task).prepare(spec, get_dataset(dataset.id), table, profile).data
        yield {
            "result": result,
            "path": tmp / "houses.zip",
            "test": data.frame.iloc[data.test_idx],
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
    (work / "runner.py").write_text(RUNNER)
    bundles = {"houses": str(work / "model.zip")}
    job = {"snippet": bundle.python_snippet("model.zip"), "probe": str(probe), "bundles": bundles}
    (work / "job.json").write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "runner.py"], cwd=work, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outside = json.loads((work / "result.json").read_text())
    assert outside["attempts"] == [] and outside["loaded"] == []
    with zipfile.ZipFile(trained["path"]) as zf:
        readme = zf.read(next(n for n in zf.namelist() if n.endswith("README.md"))).decode()
    assert "`price` looks like money or a count" in readme
    with bundle.load_bundle(trained["path"]) as loaded:
        expected = loaded.predict(rows)
        assert "own units" in loaded.info["onnx"]["note"]
        x_num, x_cat = TabularPreprocessor(loaded.info["preprocessing"]).transform(rows)
        from_onnx = run_onnx(loaded.onnx_path, x_num, x_cat).reshape(-1)
    assert list(outside["houses"]) == list(expected.columns)
    np.testing.assert_allclose(outside["houses"]["predicted_price"], expected["predicted_price"], rtol=1e-6)
    assert outside["houses"]["prediction_warning"] == expected["prediction_warning"].tolist()
    assert expected["predicted_price"].min() > 1000  # the price's units, not its log
    np.testing.assert_allclose(from_onnx, expected["predicted_price"].to_numpy(), rtol=1e-4)
