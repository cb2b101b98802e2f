"""Dates in text, money on a log scale, rare categories and the periodic number embedding, from fitting to the
shipped bundle: the values the network sees, the same predictions in a Python process where the studio
cannot be imported, ONNX against torch, and a tiny real training run with all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from studio import bundle
from studio.core.runtime import TabularNet, TabularPredictor, TabularPreprocessor, fit_target
from studio.core.spec import RunSpec
from studio.modalities.tabular.bundle import write_tabular_bundle
from tests.bundle.test_bundle import assert_same, run_onnx, torch_outputs
from tests.datasets.test_table_readings import movie_table

NUMERIC, CATEGORICAL, DATETIME = ["budget", "running_minutes"], ["director"], ["released"]


def fitted(frame: pd.DataFrame) -> TabularPreprocessor:
    return TabularPreprocessor.fit(
        frame, NUMERIC, CATEGORICAL, DATETIME, log_scaled=["budget"], rare_category_rows=5
    )


def test_money_is_scaled_on_a_log_scale() -> None:
    frame = movie_table()
    state = fitted(frame).state["numeric"]
    budget, minutes = state
    assert budget["log"] is True and "log" not in minutes
    logs = np.log1p(frame["budget"].dropna().to_numpy())
    assert budget["center"] == pytest.approx(logs.mean()) and budget["scale"] == pytest.approx(logs.std())
    assert (budget["min"], budget["max"]) == (frame["budget"].min(), frame["budget"].max())  # raw range
    x_num, _ = fitted(frame).transform(pd.DataFrame({"budget": [1e6, 1e7, None]}))
    expected = (np.log1p([1e6, 1e7]) - budget["center"]) / budget["scale"]
    np.testing.assert_allclose(x_num[:2, 0], expected, rtol=1e-5)
    assert x_num[1, 0] - x_num[0, 0] == pytest.approx(np.log(10) / budget["scale"], rel=1e-4)
    assert x_num[2, 1] == 1.0  # the gap is marked


def test_text_dates_become_year_month_and_day_of_week() -> None:
    pre = fitted(movie_table())
    (released,) = pre.state["datetime"]
    assert released["parts"] == ["year", "month", "dayofweek", "dayofyear"] and not released["dayfirst"]
    rows = pd.DataFrame({"released": ["Jun 12 1998", "1998-06-12", "Mar 1 2014", "soon"]})
    x_num, _ = pre.transform(rows)
    first = 3  # after budget, its gap mark and running_minutes
    parts = x_num[:, first : first + 4].astype("float64")
    centers = np.array([s["center"] for s in released["scalers"]])
    scales = np.array([s["scale"] for s in released["scalers"]])
    read = parts * scales + centers
    np.testing.assert_allclose(read[0], [1998, 6, 4, 163], atol=1e-3)  # a Friday, day 163
    np.testing.assert_allclose(read[1], read[0], atol=1e-3)  # the same day written another way
    np.testing.assert_allclose(read[2], [2014, 3, 5, 60], atol=1e-3)
    fills = [s["fill"] for s in released["scalers"]]  # an unreadable date is a gap, filled
    np.testing.assert_allclose(read[3], fills, atol=1e-3)
    assert x_num.shape[1] == first + 4  # no gap mark: every training date was readable


def test_rare_categories_are_pooled_and_unseen_ones_join_them() -> None:
    frame = movie_table()
    counts = frame["director"].value_counts()
    pre = fitted(frame)
    vocab = pre.state["categorical"][0]["vocab"]
    assert set(vocab) == set(counts[counts >= 5].index)
    common, rare = counts.index[0], counts[counts < 5].index[0]
    _, x_cat = pre.transform(pd.DataFrame({"director": [common, rare, "Someone New", None]}))
    assert x_cat[0, 0] == vocab.index(common) + 1
    assert x_cat[1:, 0].tolist() == [0, 0, 0]
    everyone = TabularPreprocessor.fit(frame, [], ["director"], [], rare_category_rows=1, max_categories=1000)
    assert len(everyone.state["categorical"][0]["vocab"]) == frame["director"].nunique()


def test_one_hot_keeps_a_learned_vector_for_a_column_with_many_values() -> None:
    frame = movie_table().assign(colour=lambda f: np.where(f["running_minutes"] > 110, "red", "blue"))
    pre = TabularPreprocessor.fit(
        frame, [], ["director", "colour"], [], categorical_encoding="onehot", rare_category_rows=1
    )
    director, colour = pre.state["categorical"]
    assert len(director["vocab"]) > 16 and not director["onehot"] and colour["onehot"]
    assert pre.cardinalities == [len(director["vocab"]) + 1]
    x_num, x_cat = pre.transform(frame.head(3))
    assert x_num.shape == (3, 3) and x_num.sum(axis=1).tolist() == [1.0, 1.0, 1.0]  # blue, red, rare
    assert x_cat.shape == (3, 1)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return films_bundle(tmp_path_factory)


def films_bundle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A regression bundle of a periodic-embedding network on dates, money and rare categories (no
    training: a second of work), with rows to predict; tests/bundle/test_bundle.py writes it too, for the
    process where the studio cannot be imported."""
    frame = movie_table()
    pre = fitted(frame)
    target = fit_target(frame["rating"], "regression")
    torch.manual_seed(0)
    net = TabularNet(
        pre.n_numeric, pre.cardinalities, 1, hidden_layers=2, width=16, numeric_embedding="periodic"
    )
    with torch.no_grad():
        net.numeric_embedding.frequencies.mul_(100)  # bends a small change of input visibly
    net.eval()
    state = {
        "spec": RunSpec(task="regression", data={"dataset_id": "films", "target": "rating"}),
        "preprocessing": pre.state,
        "target": target,
        "network_config": dict(net.config),
        "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "sample_rows": frame.drop(columns=["rating"]).head(5),
        "metrics": {"test/loss": 0.5},
    }
    path = write_tabular_bundle(tmp_path_factory.mktemp("bundle") / "films.zip", **state)
    probe = movie_table(n=12, seed=3).drop(columns=["rating"])
    probe.loc[0, "director"] = "Someone New"
    probe.loc[1, "released"] = "12/25/2003"
    probe.loc[2, "released"] = "not a date"
    probe.loc[3, "budget"] = None
    probe_csv = tmp_path_factory.mktemp("probe") / "probe.csv"
    probe.to_csv(probe_csv, index=False)
    return {"state": state, "path": path, "probe": probe_csv}


def films_expected(written: dict[str, Any]) -> pd.DataFrame:
    """What the network makes of the probe rows, read as training read them (the runtime's predictor)."""
    state, rows = written["state"], pd.read_csv(written["probe"])
    return TabularPredictor(
        state["preprocessing"], state["target"], state["network_config"], state["state_dict"]
    ).predict(rows)


def test_the_bundle_reads_the_table_as_training_did(written) -> None:
    """In the studio here; where the studio cannot be imported, in the one such process of
    tests/bundle/test_bundle.py (``test_bundle_predicts_the_same_where_studio_cannot_be_imported``)."""
    expected = films_expected(written)
    assert expected["predicted_rating"].nunique() > 6  # the inputs matter
    with bundle.load_bundle(written["path"]) as loaded:
        assert_same(loaded.predict(pd.read_csv(written["probe"])), expected)


def test_onnx_of_the_periodic_embedding_matches_torch(written) -> None:
    state = written["state"]
    with bundle.load_bundle(written["path"]) as loaded:
        onnx_path = loaded.onnx_path
        assert loaded.info["onnx"]["file"], loaded.info["onnx"]
        net = TabularNet(**state["network_config"])
        net.load_state_dict(state["state_dict"])
        net.eval()
        x_num, x_cat = TabularPreprocessor(state["preprocessing"]).transform(pd.read_csv(written["probe"]))
        for batch in (1, 7):
            np.testing.assert_allclose(
                run_onnx(onnx_path, x_num[:batch], x_cat[:batch]),
                torch_outputs(net, x_num[:batch], x_cat[:batch]),
                atol=1e-4,
            )


def test_a_tiny_training_with_the_new_encodings_runs(studio_home: Path, tmp_path: Path) -> None:
    from studio.data import add_csv
    from studio.engine.training import train

    frame = movie_table(n=240, seed=5)
    frame["rating"] = (np.log(frame["budget"].fillna(1e6)) / 3 + frame["director"].str.len() / 10).round(2)
    path = tmp_path / "films.csv"
    frame.to_csv(path, index=False)
    dataset = add_csv(path, name="films")
    spec = RunSpec.from_dict(
        {
            "task": "regression",
            "data": {"dataset_id": dataset.id, "target": "rating"},
            "architecture": {"name": "mlp", "params": {"numeric_embedding": "periodic", "width": 32}},
            "training": {"epochs": 4, "batch_size": 32},
        }
    )
    result = train(spec, bundle_out=tmp_path / "model.zip")
    assert result.status == "FINISHED" and np.isfinite(result.test_metrics["test/r2"])
    with bundle.load_bundle(tmp_path / "model.zip") as loaded:
        pre = loaded.info.get("preprocessing")
        predictions = loaded.predict(frame.drop(columns=["rating"]).head(5))
    assert predictions["predicted_rating"].notna().all()
    if pre is not None:
        assert [c["name"] for c in pre["numeric"] if c.get("log")] == ["budget"]
        assert [c["name"] for c in pre["datetime"]] == ["released"]


@pytest.mark.parametrize("members", [1, 2])
def test_integrated_gradients_of_a_periodic_network_add_up_to_its_prediction(written, members) -> None:
    """Explaining one prediction goes through the number embedding (the contributions are measured on the
    scaled numbers before it), for one network and for fold models averaged into one."""
    from studio.core.runtime import FoldEnsemble
    from studio.modalities.tabular.explain import row_contributions

    state = written["state"]
    net = TabularNet(**state["network_config"])
    net.load_state_dict(state["state_dict"])
    if members == 2:
        torch.manual_seed(1)
        other = TabularNet(**state["network_config"])
        with torch.no_grad():
            other.numeric_embedding.frequencies.mul_(100)
        net = FoldEnsemble([net, other], "values")
    predictor = TabularPredictor(state["preprocessing"], state["target"], dict(net.config), net.state_dict())
    rows = pd.read_csv(written["probe"])
    found = row_contributions(predictor, rows.iloc[[5]], rows)
    assert set(found["contributions"]) == {"budget", "running_minutes", "director", "released"}
    gap = found["prediction"] - found["baseline"]
    assert abs(gap) > 1e-3
    # completeness: the contributions add up to the gap, but for the integral's small error (delta)
    assert sum(found["contributions"].values()) == pytest.approx(gap + found["delta"], abs=1e-6)
    assert abs(found["delta"]) < 0.01 * state["target"]["std"]
    assert found["prediction"] == pytest.approx(predictor.predict(rows.iloc[[5]])["predicted_rating"].iloc[0], rel=1e-4)
