"""Any Hugging Face encoder through the transformer network's code: a tiny BERT-architecture model and
tokenizer that this test builds and saves to a folder itself (no download) trains through the studio
when its folder is the network's ``model`` setting, its bundle predicts raw text, and an encoder that is
not on this machine is refused in plain words."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bundle.outside import run_outside
from tests.mlflow_store import new_store
from tests.text.test_text_training import PROBE, REPO, RUNNER, reviews

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[", "]", "!", ",", "."] + sorted(
    set(" ".join(reviews(200)["review"]).split())
    | {"great", "love", "excellent", "perfect", "happy", "awful", "broken", "terrible", "refund", "slow"}
)


def tiny_bert(folder: Path) -> Path:
    """A 2-layer BERT (hidden size 16) with random weights and a word-level vocabulary, as
    ``save_pretrained`` writes them: what a Hugging Face Hub folder holds."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    BertTokenizer(vocab={word: i for i, word in enumerate(VOCABULARY)}).save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=len(VOCABULARY),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("any_encoder")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(tmp / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HOME", str(tmp / "empty-hf"))
        patch.delenv("STUDIO_ALLOW_DOWNLOADS", raising=False)
        from studio.core.spec import RunSpec
        from studio.data import add_data_file
        from studio.engine.training import train

        folder = tiny_bert(tmp / "tiny-bert")
        reviews(240, seed=7).to_csv(tmp / "reviews.csv", index=False)
        info = add_data_file(tmp / "reviews.csv")
        spec = RunSpec.from_dict(
            {
                "task": "text_classification",
                "data": {"dataset_id": info.id, "target": "label"},
                "architecture": {"name": "minilm_l6", "params": {"model": f" {folder} ", "max_length": 24}},
                "training": {"epochs": 8, "batch_size": 16},
                "optimizer": {"learning_rate": 0.003},
            }
        )
        bundle = tmp / "bert.zip"
        yield {"result": train(spec, bundle_out=bundle), "bundle": bundle, "spec": spec, "folder": folder}


def test_a_bert_from_a_folder_trains_through_the_transformer_network_and_its_bundle_predicts(
    bert_run, tmp_path
):
    import json
    import zipfile

    import numpy as np
    import pandas as pd

    from studio import tracking
    from studio.bundle import load_bundle, read_bundle_info

    result, folder = bert_run["result"], bert_run["folder"]
    assert bert_run["spec"].architecture.params["model"] == str(folder)  # the spaces typed around it go
    assert result.status == "FINISHED"
    losses = [v for _, v in tracking.metric_history(result.run_id)["val/loss"]]
    assert min(losses) < losses[0] - 0.02, losses  # it learns (random weights: slowly, but it does)
    info = read_bundle_info(bert_run["bundle"])
    assert info["text"]["type"] == "transformer" and info["text"]["max_length"] == 24
    with zipfile.ZipFile(bert_run["bundle"]) as zf:
        config = json.loads(zf.read("artifacts/files/encoder/config.json"))
        vocabulary = json.loads(zf.read("artifacts/files/tokenizer/tokenizer.json"))["model"]["vocab"]
    assert config["model_type"] == "bert" and config["hidden_size"] == 16  # this model, not MiniLM
    assert len(vocabulary) == len(VOCABULARY)
    with load_bundle(bert_run["bundle"]) as bundle:
        out = bundle.predict(PROBE)
    assert len(out) == len(PROBE)
    np.testing.assert_allclose(out[["probability_neg", "probability_pos"]].sum(axis=1), 1.0, rtol=1e-5)
    # the same answers where the studio cannot be imported, offline, with an empty Hugging Face cache and
    # the model's folder gone from where it was trained (the slow MiniLM test checks this with MiniLM)
    (tmp_path / "model.zip").write_bytes(bert_run["bundle"].read_bytes())
    PROBE.to_json(tmp_path / "probe.json")
    moved = folder.with_name("moved-away")
    folder.rename(moved)
    try:
        run_outside(tmp_path, RUNNER, timeout=300, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf")})
    finally:
        moved.rename(folder)
    outside = pd.DataFrame(json.loads((tmp_path / "result.json").read_text()))
    assert list(outside["predicted_label"]) == list(out["predicted_label"])
    np.testing.assert_allclose(outside["probability_pos"], out["probability_pos"], atol=1e-5)


def test_an_encoder_that_is_not_here_is_refused_in_plain_words_without_downloading(
    studio_home, tmp_path, monkeypatch
):
    from studio.core import pretrained
    from studio.core.errors import TrainingError
    from studio.core.spec import RunSpec
    from studio.data import add_data_file
    from studio.engine.training import train

    def no_download(hub_id: str) -> None:
        raise AssertionError("downloaded without being allowed")

    monkeypatch.setattr(pretrained, "_download", no_download)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv(pretrained.ALLOW_DOWNLOADS, raising=False)
    reviews(60).to_csv(tmp_path / "reviews.csv", index=False)
    info = add_data_file(tmp_path / "reviews.csv")
    for model, where in (
        ("someone/no-such-encoder", "the Hugging Face cache"),
        (str(tmp_path / "no-such-folder"), "the folder"),
    ):
        spec = RunSpec.from_dict(
            {
                "task": "text_classification",
                "data": {"dataset_id": info.id, "target": "label"},
                "architecture": {"name": "minilm_l6", "params": {"model": model}},
            }
        )
        with pytest.raises(TrainingError) as raised:
            train(spec)
        message = str(raised.value)
        assert f"The pretrained text model {model} is not on this machine" in message
        assert where in message and "STUDIO_ALLOW_DOWNLOADS=1" in message and "\n" not in message


@pytest.mark.slow
def test_the_cli_takes_an_encoder_folder_and_refuses_a_missing_one_on_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "STUDIO_ALLOW_DOWNLOADS"}
    env.update(
        STUDIO_HOME=str(tmp_path / "home"),
        MLFLOW_TRACKING_URI=new_store(f"{tmp_path}/mlruns"),
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "empty-hf"),
    )
    reviews(120, seed=2).to_csv(tmp_path / "reviews.csv", index=False)
    folder = tiny_bert(tmp_path / "tiny-bert")

    def train(model: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "studio", "train", "--data", str(tmp_path / "reviews.csv"), "--target",
             "label", "--arch", "minilm_l6", "--epochs", "2", "--set", f"architecture.params.model={model}",
             "--bundle-out", str(tmp_path / "model.zip")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    done = train(str(folder))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test/accuracy" in done.stdout
    from studio.bundle import read_bundle_info

    # the default 128 tokens are more than this BERT has positions for: it reads its 64
    assert read_bundle_info(tmp_path / "model.zip")["text"]["max_length"] == 64
    done = train("someone/no-such-encoder")
    assert done.returncode == 2
    assert (
        done.stderr.strip().count("\n") == 0
        and "someone/no-such-encoder is not on this machine" in done.stderr
    )
