"""A base model from the Hugging Face Hub, never silently: before a download the Train form and the
terminal say which files come and how big, a download fetches exactly those, a model in the cache is
"already on this machine", and an unknown id or an unreachable Hub is one plain sentence. The Hub is a
local HTTP server (tests/llm/fake_hub.py) that huggingface_hub's real code talks to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.llm.fake_hub import FakeHub, repository_of
from tests.llm.tiny import build_model, write_pairs_csv

ROOT = Path(__file__).resolve().parents[2]
EXTRA = {  # what a repository holds beside the model, which a download must leave alone
    "pytorch_model.bin": b"b" * 50_000,
    "onnx/model.onnx": b"o" * 70_000,
    "original/consolidated.pth": b"p" * 30_000,
    "README.md": b"# a model\n",
    ".gitattributes": b"*.safetensors filter=lfs\n",
}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("hub") / "tiny-llama")


@pytest.fixture
def hub(tiny_folder, monkeypatch):
    """The fake Hub with 'TinyOrg/tiny-llama' (the tiny model and other files), 'TinyOrg/gated' and
    'TinyOrg/no-model' (a data repository's files); huggingface_hub pointed at it as HF_ENDPOINT would."""
    import huggingface_hub.constants as constants

    fake = FakeHub(
        {
            "TinyOrg/tiny-llama": repository_of(tiny_folder, EXTRA),
            "TinyOrg/no-model": {"README.md": b"data", "train.csv": b"a,b\n"},
        },
        gated=("TinyOrg/gated",),
    )
    monkeypatch.setattr(constants, "ENDPOINT", fake.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def online(tmp_path, monkeypatch):
    """Downloads allowed, into an empty Hugging Face cache."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("STUDIO_ALLOW_DOWNLOADS", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported: in this process that may
    # have been during a test that switched the Hub off
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def model_bytes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}


def test_only_what_from_pretrained_reads_is_counted():
    from studio.modalities.llm.hub import files_to_fetch

    sharded = {
        "config.json": 1,
        "generation_config.json": 2,
        "model-00001-of-00002.safetensors": 100,
        "model-00002-of-00002.safetensors": 50,
        "model.safetensors.index.json": 3,
        "pytorch_model-00001-of-00002.bin": 1000,
        "pytorch_model.bin.index.json": 4,
        "tokenizer.json": 5,
        "merges.txt": 6,
        "vocab.json": 7,
        "onnx/model.onnx": 10_000,
        "model.gguf": 10_000,
        "consolidated.safetensors": 10_000,
        "README.md": 8,
    }
    assert sum(files_to_fetch(sharded).values()) == 1 + 2 + 100 + 50 + 3 + 5 + 6 + 7
    bin_only = {"config.json": 1, "pytorch_model.bin": 1000, "tokenizer.model": 9, "flax_model.msgpack": 999}
    assert files_to_fetch(bin_only) == {"config.json": 1, "pytorch_model.bin": 1000, "tokenizer.model": 9}


def test_the_plan_says_which_files_and_how_big_with_the_hubs_sizes(hub, tiny_folder, online):
    from studio.modalities.llm.hub import download_plan
    from studio.modalities.llm.models import human_bytes, where_it_comes_from

    expected = model_bytes(tiny_folder)  # every file of the tiny model, none of EXTRA
    plan = download_plan("TinyOrg/tiny-llama")
    assert dict(plan.files) == expected and plan.total == sum(expected.values())
    assert ("GET", "/api/models/TinyOrg/tiny-llama?blobs=true") in hub.requests
    note, blocks = where_it_comes_from("TinyOrg/tiny-llama")
    assert not blocks
    assert note.startswith(
        f"Starting the run downloads 'TinyOrg/tiny-llama' from the Hugging Face Hub: {len(expected)} files, "
        f"{human_bytes(sum(expected.values()))} in all (model.safetensors {human_bytes(expected['model.safetensors'])}, "
    )
    assert not hub.sent  # nothing downloaded by asking


def test_a_download_fetches_exactly_the_planned_files_and_then_the_model_is_here(
    hub, tiny_folder, online, monkeypatch
):
    from studio.modalities.llm.hub import download_plan
    from studio.modalities.llm.models import locate_base_model, where_it_comes_from

    said: list[str] = []
    folder = locate_base_model("TinyOrg/tiny-llama", say=said.append)
    plan = download_plan("TinyOrg/tiny-llama")
    assert said == [plan.sentence()]
    assert hub.sent == {f"TinyOrg/tiny-llama/{name}": size for name, size in plan.files}  # those bytes only
    assert model_bytes(folder) == dict(plan.files)
    assert folder.is_relative_to(online)
    import huggingface_hub.constants as constants

    from studio.core.llm_runtime import find_base_model

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(online))  # (as HF_HUB_CACHE at import would)
    assert find_base_model({"id": "TinyOrg/tiny-llama", "path": "/nowhere"}) == folder  # the bundle finds it
    hub.requests.clear()
    note, blocks = where_it_comes_from("TinyOrg/tiny-llama")
    assert note == (
        "The base model 'TinyOrg/tiny-llama' is already on this machine (in the Hugging Face cache): nothing "
        "is downloaded."
    )
    assert not blocks and not hub.requests  # the cache is read offline


def test_unknown_gated_unreachable_and_downloads_off_are_one_sentence_each(hub, online, monkeypatch):
    import huggingface_hub.constants as constants

    from studio.modalities.llm.models import where_it_comes_from

    unknown = where_it_comes_from("TinyOrg/absent")
    assert unknown == (
        "The Hugging Face Hub has no model 'TinyOrg/absent' (or it is private): check the id, e.g. "
        "Qwen/Qwen2.5-0.5B-Instruct.",
        True,
    )
    gated, blocks = where_it_comes_from("TinyOrg/gated")
    assert blocks and gated.startswith("The model 'TinyOrg/gated' is gated on the Hugging Face Hub")
    no_model, blocks = where_it_comes_from("TinyOrg/no-model")
    assert blocks and "holds no model in the transformers format" in no_model
    monkeypatch.setenv("STUDIO_ALLOW_DOWNLOADS", "0")
    hub.requests.clear()
    off, blocks = where_it_comes_from("TinyOrg/tiny-llama")
    assert blocks and "is not on this machine" in off and "downloads are off" in off
    assert not hub.requests  # downloads off: the Hub is not even asked
    monkeypatch.setenv("STUDIO_ALLOW_DOWNLOADS", "1")
    hub.close()  # the machine goes offline
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    gone, blocks = where_it_comes_from("TinyOrg/tiny-llama")
    assert blocks and gone.startswith(
        "The model 'TinyOrg/tiny-llama' is not on this machine and the Hugging Face Hub cannot be reached from it"
    )
    assert "\n" not in gone and "Traceback" not in gone


def test_the_train_form_says_what_the_download_fetches_and_blocks_an_unknown_id(
    hub, tiny_folder, online, studio_home, tmp_path
):
    from studio.data import add_data_file
    from studio.modalities.llm.hub import download_plan
    from studio.modalities.llm.views import _hub_note

    _hub_note.clear()
    dataset = add_data_file(write_pairs_csv(tmp_path / "pairs.csv"))
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=90).run()
    at.selectbox(key="train_dataset").set_value(dataset.id).run()
    at.selectbox(key="train_task").set_value("llm_finetune").run()
    at.text_input(key="train__arch_lora__base_model").set_value("TinyOrg/tiny-llama").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [i.value for i in at.info if "downloads" in i.value] == [
        download_plan("TinyOrg/tiny-llama").sentence()
    ]
    assert not at.button(key="train_submit").disabled
    assert not hub.sent
    at.text_input(key="train__arch_lora__base_model").set_value("TinyOrg/absent").run()
    assert any(w.value.startswith("The Hugging Face Hub has no model 'TinyOrg/absent'") for w in at.warning)
    assert at.button(key="train_submit").disabled


def test_the_terminal_refuses_an_unknown_id_in_one_line(hub, online, studio_home, tmp_path):
    data = write_pairs_csv(tmp_path / "pairs.csv")
    env = {**os.environ, "HF_ENDPOINT": hub.url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "studio", "train", "--data", str(data), "--base-model", "TinyOrg/absent"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "error: The Hugging Face Hub has no model 'TinyOrg/absent' (or it is private): check the id, e.g. "
        "Qwen/Qwen2.5-0.5B-Instruct.\n"
    )
    assert ("GET", "/api/models/TinyOrg/absent?blobs=true") in hub.requests


@pytest.mark.slow  # a training run in a subprocess (about 30 s here)
def test_the_terminal_says_what_it_downloads_then_downloads_exactly_that_and_trains(
    hub, tiny_folder, online, studio_home, tmp_path
):
    from studio.modalities.llm.hub import download_plan

    plan = download_plan("TinyOrg/tiny-llama")
    data = write_pairs_csv(tmp_path / "pairs.csv")
    env = {**os.environ, "HF_ENDPOINT": hub.url, "PYTHONPATH": str(ROOT)}
    args = ["--data", str(data), "--base-model", "TinyOrg/tiny-llama", "--epochs", "1", "--device", "cpu"]
    done = subprocess.run(
        [sys.executable, "-m", "studio", "train", *args, "--bundle-out", str(tmp_path / "model.zip")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.splitlines()[0] == plan.sentence()  # said first, before anything came
    assert hub.sent == {f"TinyOrg/tiny-llama/{name}": size for name, size in plan.files}
    assert "Model bundle:" in done.stdout and (tmp_path / "model.zip").is_file()
