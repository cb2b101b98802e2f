"""The model bundle: written from a tiny untrained state, loaded in-process and in a Python process
where ``studio`` and ``lightning_modules`` cannot be imported, ONNX against torch, and every refusal."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from studio import bundle
from studio.bundle import onnx as bundle_onnx
from studio.core.errors import BundleError
from studio.core.runtime import TabularNet, TabularPredictor, TabularPreprocessor, fit_target
from studio.core.spec import RunSpec
from studio.modalities import predict_csv
from studio.modalities.tabular import bundle as table_bundle
from studio.modalities.tabular.bundle import write_tabular_bundle
from tests.bundle.outside import BLOCKER, run_outside

NUMERIC, CATEGORICAL, DATETIME = ["amount", "count", "flag"], ["city"], ["when"]
TOLERANCE = 1e-6


def make_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": np.where(rng.random(n) < 0.2, np.nan, rng.normal(50, 10, n)),
            "count": rng.integers(0, 10, n),
            "flag": rng.random(n) < 0.5,
            "city": rng.choice(np.array(["paris", "rome", "oslo", None], dtype=object), n),
            "when": pd.date_range("2024-01-01", periods=n, freq="37h").astype(str),
            "row_id": np.arange(n),
            "label": rng.choice(["high", "low", "mid"], n),
            "price": rng.normal(1000, 300, n),
        }
    )


def make_state(task: str, hidden_layers: int = 2) -> dict[str, Any]:
    """What training hands to ``write_tabular_bundle``, without training: random weights and
    random batch-norm statistics, in eval mode."""
    frame = make_frame(80, seed=0)
    target = "label" if task == "classification" else "price"
    preprocessor = TabularPreprocessor.fit(frame, NUMERIC, CATEGORICAL, DATETIME)
    target_state = fit_target(frame[target], task)
    n_out = len(target_state["classes"]) if task == "classification" else 1
    torch.manual_seed(1)
    net = TabularNet(
        preprocessor.n_numeric, preprocessor.cardinalities, n_out, hidden_layers=hidden_layers, width=16
    )
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    net.eval()
    return {
        "spec": RunSpec(task=task, data={"dataset_id": "demo", "target": target}),
        "preprocessing": preprocessor.state,
        "target": target_state,
        "network_config": dict(net.config),
        "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "sample_rows": frame.drop(columns=[target]).head(5),
        "metrics": {"test/loss": 0.5, "test/accuracy": float("nan")},
    }


def reference(state: dict[str, Any], rows: pd.DataFrame) -> pd.DataFrame:
    predictor = TabularPredictor(
        state["preprocessing"], state["target"], state["network_config"], state["state_dict"]
    )
    return predictor.predict(rows)


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame, tolerance: float = TOLERANCE) -> None:
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    for column in expected.columns:
        if pd.api.types.is_float_dtype(expected[column]):
            np.testing.assert_allclose(
                actual[column].to_numpy(float), expected[column].to_numpy(float), atol=tolerance
            )
        else:
            assert actual[column].astype(str).tolist() == expected[column].astype(str).tolist()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both bundles, written once for the module, with their states and write times."""
    folder = tmp_path_factory.mktemp("bundles")
    out: dict[str, Any] = {}
    for task in ("classification", "regression"):
        state = make_state(task)
        started = time.perf_counter()
        path = write_tabular_bundle(folder / f"{task}.zip", **state)
        out[task] = {"state": state, "path": path, "seconds": time.perf_counter() - started}
    return out


@pytest.fixture(scope="module")
def probe_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rows to predict: a missing number, an unseen and a missing category, an unknown date and an
    extra column the model never saw."""
    frame = make_frame(12, seed=7).drop(columns=["label", "price"])
    frame.loc[0, "city"] = "atlantis"
    frame.loc[1, "city"] = None
    frame.loc[2, "amount"] = np.nan
    frame.loc[3, "when"] = "not a date"
    frame["extra"] = "ignored"
    path = tmp_path_factory.mktemp("probe") / "probe.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def loaded(written: dict[str, Any]) -> dict[str, bundle.LoadedBundle]:
    bundles = {task: bundle.load_bundle(item["path"]) for task, item in written.items()}
    yield bundles
    for item in bundles.values():
        item.close()


# --------------------------------------------------------------------------- layout
def test_bundle_layout_and_json(written: dict[str, Any]) -> None:
    with zipfile.ZipFile(written["classification"]["path"]) as zf:
        names = set(zf.namelist())
        info = json.loads(zf.read("artifacts/studio_model.json"))
        requirements = zf.read("requirements.txt").decode()
        mlmodel = zf.read("MLmodel").decode()
        readme = zf.read("README.md").decode()
    assert "`prediction_warning`" in readme  # the column every tabular prediction ends with
    assert {
        "MLmodel",
        "requirements.txt",
        "python_env.yaml",
        "README.md",
        "training_studio_pyfunc.py",
        "artifacts/studio_model.json",
        "artifacts/weights.pt",
        "artifacts/training_studio_runtime.py",
        "artifacts/model.onnx",
    } <= names
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".cloudpickle"))]
    assert "mlflow.pyfunc.loaders.code_model" in mlmodel
    assert "mlflow==" in requirements and "torch==" in requirements and "+" not in requirements
    assert info["format_version"] == bundle.FORMAT_VERSION and info["kind"] == "tabular"
    assert info["task"] == "classification" and info["target"]["classes"] == ["high", "low", "mid"]
    assert info["input_columns"] == [
        {"name": "amount", "kind": "numeric"},
        {"name": "count", "kind": "numeric"},
        {"name": "flag", "kind": "numeric"},
        {"name": "when", "kind": "datetime"},
        {"name": "city", "kind": "categorical"},
    ]
    assert info["metrics"] == {"test/loss": 0.5, "test/accuracy": None}
    assert info["spec"]["data"]["target"] == "label"
    assert len(info["example_rows"]) == 5 and "row_id" not in info["example_rows"][0]
    assert info["studio_version"] and info["created"].endswith("Z")
    assert info["onnx"]["file"] == "artifacts/model.onnx"
    # Small MLP: the brief's target is under 2 s; allow for a busy shared machine.
    assert written["regression"]["seconds"] < 10


def test_importing_the_module_stays_cheap() -> None:
    code = "import sys, studio.bundle as b; b.python_snippet('m.zip'); print(sorted({'torch', 'mlflow'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd()
    )
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- predictions in-process
def test_classification_matches_the_runtime_predictor(written, loaded, probe_csv) -> None:
    rows = pd.read_csv(probe_csv)
    predictions = loaded["classification"].predict(rows)
    assert_same(predictions, reference(written["classification"]["state"], rows))
    assert list(predictions.columns) == [
        "predicted_label",
        "probability_high",
        "probability_low",
        "probability_mid",
        "prediction_warning",
    ]
    assert loaded["classification"].prediction_columns == list(predictions.columns)[:-1]
    np.testing.assert_allclose(predictions.filter(like="probability_").sum(axis=1), 1.0, atol=1e-9)
    assert set(predictions["predicted_label"]) <= {"high", "low", "mid"}
    assert predictions.index.equals(rows.index)


def test_regression_predicts_in_original_units(written, loaded, probe_csv) -> None:
    state = written["regression"]["state"]
    rows = pd.read_csv(probe_csv)
    predictions = loaded["regression"].predict(rows)
    assert list(predictions.columns) == ["predicted_price", "prediction_warning"]
    assert_same(predictions, reference(state, rows))
    x_num, x_cat = TabularPreprocessor(state["preprocessing"]).transform(rows)
    net = TabularNet(**state["network_config"])
    net.load_state_dict(state["state_dict"])
    with torch.no_grad():
        scaled = net.eval()(torch.from_numpy(x_num), torch.from_numpy(x_cat)).numpy().ravel()
    expected = scaled * state["target"]["std"] + state["target"]["mean"]
    np.testing.assert_allclose(predictions["predicted_price"], expected, rtol=1e-6)


def test_extra_missing_and_unseen_values(loaded, probe_csv) -> None:
    model = loaded["classification"]
    rows = pd.read_csv(probe_csv)
    base = model.predict(rows)
    with_more = model.predict(rows.assign(another=1.5, yet_another="x"))
    assert_same(with_more, base)
    without_amount = model.predict(rows.drop(columns=["amount"]))
    assert_same(without_amount, model.predict(rows.assign(amount=np.nan)))
    unseen, missing = model.predict(rows.iloc[[0]]), model.predict(rows.iloc[[0]].assign(city=None))
    assert_same(unseen.reset_index(drop=True), missing.reset_index(drop=True))
    records = model.model.predict(rows.to_dict("records"))
    assert_same(records, base)
    one_row = model.model.predict(rows.iloc[0].to_dict())
    assert_same(one_row, base.iloc[[0]].reset_index(drop=True))
    assert_same(model.predict(rows.iloc[0].to_dict()), one_row)


# --------------------------------------------------------------------------- outside the studio
RUNNER = BLOCKER + textwrap.dedent(
    """
    import contextlib, io, json, zipfile

    import mlflow
    import pandas as pd

    job = json.load(open("job.json"))
    printed = io.StringIO()
    namespace = {}
    with contextlib.redirect_stdout(printed):
        exec(job["snippet"], namespace)
    result = {"snippet": namespace["predictions"].to_dict(orient="list"), "printed": printed.getvalue()}
    for task, path in job["bundles"].items():
        rows = pd.read_csv(job.get("probes", {}).get(task, job["probe"]))
        zipfile.ZipFile(path).extractall(task)
        model = mlflow.pyfunc.load_model(task)
        result[task] = model.predict(rows).to_dict(orient="list")
        result[task + "_records"] = model.predict(rows.to_dict("records")).to_dict(orient="list")
    result["attempts"] = attempts
    result["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    json.dump(result, open("result.json", "w"))
    """
)


def test_bundle_predicts_the_same_where_studio_cannot_be_imported(
    written, loaded, probe_csv, tmp_path, tmp_path_factory
) -> None:
    """Both bundles here, and the periodic-embedding bundle on dates, money and rare categories of
    tests/bundle/test_table_features.py (it reads its table as training did without the studio), in one
    process (its imports of torch and MLflow cost seconds)."""
    from tests.bundle.test_table_features import films_bundle, films_expected

    films = films_bundle(tmp_path_factory)
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "model.zip").write_bytes(written["classification"]["path"].read_bytes())
    (work / "data.csv").write_bytes(probe_csv.read_bytes())
    job = {
        "snippet": bundle.python_snippet("model.zip"),
        "probe": str(probe_csv),
        "bundles": {**{task: str(item["path"]) for task, item in written.items()}, "films": str(films["path"])},
        "probes": {"films": str(films["probe"])},
    }
    (work / "job.json").write_text(json.dumps(job))
    run_outside(work, RUNNER)
    result = json.loads((work / "result.json").read_text())
    assert result["attempts"] == [] and result["loaded"] == []
    rows = pd.read_csv(probe_csv)
    for task in ("classification", "regression"):
        expected = loaded[task].predict(rows)
        assert_same(pd.DataFrame(result[task]), expected.reset_index(drop=True))
        assert_same(pd.DataFrame(result[task + "_records"]), expected.reset_index(drop=True))
    assert_same(pd.DataFrame(result["films"]), films_expected(films).reset_index(drop=True))
    assert_same(
        pd.DataFrame(result["snippet"]), loaded["classification"].predict(rows).reset_index(drop=True)
    )
    assert "predicted_label" in result["printed"]


# --------------------------------------------------------------------------- ONNX
def run_onnx(path: Path, x_num: np.ndarray, x_cat: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"numeric": x_num, "categorical": x_cat}
    return session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})[0]


def torch_outputs(net: torch.nn.Module, x_num: np.ndarray, x_cat: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x_num), torch.from_numpy(x_cat)).numpy()


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_onnx_in_the_bundle_matches_torch(task, written, loaded, probe_csv) -> None:
    state = written[task]["state"]
    info = loaded[task].info["onnx"]
    assert [i["name"] for i in info["inputs"]] == ["numeric", "categorical"]
    assert info["inputs"][0]["shape"][0] == "batch"
    net = TabularNet(**state["network_config"])
    net.load_state_dict(state["state_dict"])
    net.eval()
    x_num, x_cat = TabularPreprocessor(state["preprocessing"]).transform(pd.read_csv(probe_csv))
    for batch in (1, 7):
        onnx_out = run_onnx(loaded[task].onnx_path, x_num[:batch], x_cat[:batch])
        np.testing.assert_allclose(onnx_out, torch_outputs(net, x_num[:batch], x_cat[:batch]), atol=1e-4)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize(("n_numeric", "cardinalities"), [(6, [4, 9]), (5, []), (0, [3, 5])])
def test_onnx_export_of_each_shape(exporter, n_numeric, cardinalities, tmp_path) -> None:
    torch.manual_seed(0)
    net = TabularNet(n_numeric, cardinalities, 3, hidden_layers=1, width=8).eval()
    path = tmp_path / "net.onnx"
    assert table_bundle._export_onnx(net, path, n_numeric, len(cardinalities), exporter=exporter) == exporter
    inputs = {i["name"]: i for i in bundle_onnx._onnx_inputs(path)}
    assert all(i["shape"][0] == "batch" for i in inputs.values())
    rng = np.random.default_rng(0)
    for batch in (1, 7):
        x_num = rng.normal(size=(batch, n_numeric)).astype("float32")
        x_cat = np.column_stack([rng.integers(0, c, batch) for c in cardinalities] or [np.zeros((batch, 0))])
        x_cat = x_cat.astype("int64")
        np.testing.assert_allclose(run_onnx(path, x_num, x_cat), torch_outputs(net, x_num, x_cat), atol=1e-4)


def test_failed_onnx_export_leaves_a_working_bundle(monkeypatch, tmp_path, probe_csv) -> None:
    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(table_bundle, "_export_onnx", broken)
    state = make_state("regression", hidden_layers=0)
    path = write_tabular_bundle(tmp_path / "no_onnx.zip", **state)
    info = bundle.read_bundle_info(path)
    assert info["onnx"] == {"file": None, "error": "RuntimeError: exporter exploded"}
    assert "artifacts/model.onnx" not in zipfile.ZipFile(path).namelist()
    rows = pd.read_csv(probe_csv)
    with bundle.load_bundle(path) as loaded_bundle:
        assert loaded_bundle.onnx_path is None
        assert_same(loaded_bundle.predict(rows), reference(state, rows))


# --------------------------------------------------------------------------- predict_csv and refusals
def test_predict_csv_writes_inputs_and_predictions(written, probe_csv, tmp_path) -> None:
    out = tmp_path / "deeper" / "predictions.csv"
    result = predict_csv(written["classification"]["path"], probe_csv, out)
    rows = pd.read_csv(probe_csv)
    prediction_columns = ["predicted_label", "probability_high", "probability_low", "probability_mid"]
    assert list(result.columns) == list(rows.columns) + prediction_columns + ["prediction_warning"]
    saved = pd.read_csv(out)
    assert list(saved.columns) == list(result.columns) and len(saved) == len(rows)
    expected = reference(written["classification"]["state"], rows)
    assert_same(saved[prediction_columns], expected[prediction_columns])


def test_a_rezipped_bundle_folder_still_loads(written, probe_csv, tmp_path) -> None:
    source = written["regression"]["path"]
    rezipped = tmp_path / "rezipped.zip"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(rezipped, "w") as zout:
        for name in zin.namelist():
            zout.writestr(f"my model/{name}", zin.read(name))
    rows = pd.read_csv(probe_csv)
    with bundle.load_bundle(rezipped) as loaded_bundle:
        assert_same(loaded_bundle.predict(rows), reference(written["regression"]["state"], rows))


def rewrite_info(source: Path, target: Path, **changes: Any) -> Path:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == bundle.INFO_MEMBER:
                data = json.dumps({**json.loads(data), **changes}).encode()
            zout.writestr(name, data)
    return target


def test_refusals_are_one_plain_sentence(written, tmp_path, probe_csv) -> None:
    source = written["classification"]["path"]
    text = tmp_path / "notes.zip"
    text.write_text("hello")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("data.csv", "a,b\n1,2\n")
    unsafe = tmp_path / "unsafe.zip"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(unsafe, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, zin.read(name))
        zout.writestr("../escaped.txt", "no")
    unrelated = tmp_path / "unrelated.csv"
    pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}).to_csv(unrelated, index=False)
    cases = [
        (tmp_path / "missing.zip", "no such file"),
        (text, "not a zip file"),
        (other, "not a Training Studio model bundle"),
        (
            rewrite_info(source, tmp_path / "newer.zip", format_version=bundle.FORMAT_VERSION + 1),
            "newer Training Studio",
        ),
        (rewrite_info(source, tmp_path / "image.zip", kind="image"), "'image' model"),
        (
            rewrite_info(source, tmp_path / "foreign.zip", format="something-else"),
            "not a Training Studio model bundle",
        ),
        (unsafe, "unsafe path"),
    ]
    for path, phrase in cases:
        with pytest.raises(BundleError, match=phrase) as caught:
            bundle.load_bundle(path)
        assert "\n" not in str(caught.value)
    assert not (tmp_path.parent / "escaped.txt").exists()
    with pytest.raises(BundleError, match="it expects: amount, count, flag, when, city"):
        predict_csv(source, unrelated)
    with bundle.load_bundle(source) as loaded_bundle, pytest.raises(BundleError, match="it expects"):
        loaded_bundle.predict(pd.DataFrame({"x": [1]}))
