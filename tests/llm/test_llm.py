"""Fine-tuning a language model, with a tiny Llama and a tokenizer the tests build themselves (no
downloads): the data's shapes are recognised, bad input is refused in one sentence before a run exists,
a LoRA run trains through the engine and writes an adapter bundle that answers in a subprocess without the
studio, as the studio answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from studio.core.errors import DatasetError, StudioError
from studio.modalities.llm.shapes import data_report, detect_shape, examples, read_jsonl
from tests.bundle.outside import run_outside
from tests.llm.tiny import PAIRS, build_model, write_chat_jsonl, write_pairs_csv
from tests.mlflow_store import new_store

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- shapes (no torch)
@pytest.mark.parametrize(
    ("columns", "kind", "answer", "prompt"),
    [
        (["prompt", "response"], "prompt_response", "response", "prompt"),
        (["Question", "Answer", "id"], "prompt_response", "Answer", "Question"),
        (["instruction", "input", "output"], "prompt_response", "output", "instruction"),
        (["input", "output"], "prompt_response", "output", "input"),
        (["messages"], "chat", "messages", None),
        (["text"], "text", "text", None),
        (["story"], "text", "story", None),
    ],
)
def test_the_shape_is_recognised_from_the_column_names(columns, kind, answer, prompt):
    shape = detect_shape(columns)
    assert (shape.kind, shape.answer, shape.prompt) == (kind, answer, prompt)


def test_a_table_of_other_columns_is_no_shape():
    assert detect_shape(["age", "income"]) is None


def test_alpaca_input_joins_the_instruction_and_chats_end_with_the_last_assistant_message():
    table = pd.DataFrame({"instruction": ["Translate"], "input": ["chat"], "output": ["cat"]})
    (ex,) = examples(table, detect_shape(list(table.columns)))
    assert ex.messages == [{"role": "user", "content": "Translate\n\nchat"}] and ex.answer == "cat"
    chats = read_jsonl(
        b'{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}, '
        b'{"role": "assistant", "content": "hello"}]}\n',
        "c.jsonl",
    )
    (ex,) = examples(chats, detect_shape(list(chats.columns)))
    assert [m["role"] for m in ex.messages] == ["system", "user"] and ex.answer == "hello"


def test_a_jsonl_line_that_is_not_json_is_named_in_one_sentence():
    with pytest.raises(DatasetError, match=r"^Line 2 of 'bad.jsonl' is not JSON \(") as err:
        read_jsonl(b'{"prompt": "a", "response": "b"}\n{"prompt": oops}\n', "bad.jsonl")
    assert "\n" not in str(err.value)


def test_the_report_counts_duplicates_and_empty_answers_and_cut_examples():
    table = pd.DataFrame({"prompt": ["a", "a", "b", "c"], "response": ["x", "x", "", "y y y y"]})
    report = data_report(table, count_tokens=lambda e: 1 + len(e.answer.split()), max_length=3)
    assert report["shape"] == "prompt_response" and report["examples"] == 4
    assert report["duplicates"] == 1 and report["empty_answers"] == 1
    assert report["tokens"] == [2, 2, 1, 5] and report["longest"] == 5 and report["cut"] == 1


INSTRUCTIONS = [
    {"instruction": "say *hello*", "input": "", "output": "hello there friend, how are you today"},
    {"instruction": "name a fruit", "input": "a red one", "output": "apple"},
    {"instruction": "what colour is the sky", "input": "", "output": "blue"},
    {"instruction": "name a fruit", "input": "a red one", "output": "apple"},
]


def test_a_jsonl_of_instructions_is_read_as_examples_and_the_terminal_says_so(studio_home, tmp_path, capsys):
    """``datasets add`` / ``datasets show`` of an instruction JSONL: the fields of the prompt and the
    answer, words per example, the repeated example; no table target, and fine-tuning is the suggestion."""
    from studio.cli.main import main
    from studio.data import load_profile

    path = tmp_path / "alpaca.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in INSTRUCTIONS) + "\n")
    assert main(["datasets", "add", str(path)]) == 0
    dataset_id = capsys.readouterr().out.splitlines()[0]
    profile = load_profile(dataset_id)
    assert (profile["suggested_target"], profile["suggested_task"]) == ("output", "llm_finetune")
    reading = profile["llm"]
    assert (reading["prompt"], reading["extra_input"], reading["answer"]) == ("instruction", "input", "output")
    assert reading["examples"] == 4 and reading["duplicates"] == 1 and reading["empty_answers"] == 0
    assert reading["answer_words"]["words_max"] == 7 and reading["answer_words"]["words_median"] == 1.0
    assert main(["datasets", "show", dataset_id]) == 0
    shown = capsys.readouterr().out
    assert "language-model examples: prompt/response pairs" in shown and "suggested target" not in shown
    assert "examples: 4; prompt: 'instruction' plus 'input'; answer: 'output'" in shown
    assert "answer words: median 1, 90% at most 1, longest 7" in shown
    assert "note: 1 example repeats an earlier one exactly." in shown


def test_a_csv_is_read_as_examples_only_when_it_holds_free_text(studio_home, tmp_path):
    from studio.data import add_data_file, load_profile

    pairs = load_profile(add_data_file(write_pairs_csv(tmp_path / "pairs.csv")).id)
    assert pairs["llm"]["shape"] == "prompt_response" and pairs["suggested_task"] == "llm_finetune"
    survey = tmp_path / "survey.csv"
    pd.DataFrame(
        {"question": ["q1", "q2", "q3"] * 10, "answer": ["yes", "no"] * 15, "age": range(30)}
    ).to_csv(survey, index=False)
    profile = load_profile(add_data_file(survey).id)
    assert "llm" not in profile and profile["suggested_task"] != "llm_finetune"


def test_every_assistant_turn_of_a_chat_is_learnt_and_the_user_turns_are_masked(tmp_path):
    from lightning_modules.llm.module import IGNORE, encode_example
    from tests.llm.tiny import build_tokenizer

    tokenizer = build_tokenizer(tmp_path / "tok")
    chat = [
        {"role": "user", "content": "what colour is the sky"},
        {"role": "assistant", "content": "blue"},
        {"role": "user", "content": "what colour is grass"},
        {"role": "assistant", "content": "green"},
    ]
    item = encode_example(tokenizer, chat[:3], chat[3]["content"], 256)
    tokens = tokenizer.convert_ids_to_tokens(item.input_ids)
    learnt = [t for t, label in zip(tokens, item.labels, strict=True) if label != IGNORE]
    assert learnt == ["blue", "</s>", "green", "</s>"]
    assert all(label in (IGNORE, token) for token, label in zip(item.input_ids, item.labels, strict=True))
    masked = {t for t, label in zip(tokens, item.labels, strict=True) if label == IGNORE}
    assert {"sky", "grass", "user", "assistant"} <= masked
    assert tokenizer.decode(item.prompt_ids) == tokenizer.apply_chat_template(
        chat[:3], tokenize=False, add_generation_prompt=True
    ).strip()
    one_turn = encode_example(tokenizer, chat[:1], "blue", 256)  # a single turn: the answer alone, as before
    assert [t for t, x in zip(tokenizer.convert_ids_to_tokens(one_turn.input_ids), one_turn.labels,
                              strict=True) if x != IGNORE] == ["blue", "</s>"]  # fmt: skip


QWEN_05B = {
    "model_type": "qwen2",
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "vocab_size": 151936,
    "intermediate_size": 4864,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "tie_word_embeddings": True,
}
"""Qwen2.5-0.5B's configuration (what the memory estimate reads)."""


def test_the_memory_estimate_adds_up_and_refuses_what_cannot_fit():
    from studio.modalities.llm.models import estimate_memory, fits_message, parameter_count, target_modules

    config = QWEN_05B
    assert 0.45e9 < parameter_count(config) < 0.55e9  # Qwen2.5-0.5B has 494 M parameters
    kw = {
        "method": "lora",
        "rank": 16,
        "targets": target_modules(config),
        "batch_size": 8,
        "length": 512,
        "weight_bytes": 2,
    }
    plain, light = (
        estimate_memory(config, checkpointing=False, **kw),
        estimate_memory(config, checkpointing=True, **kw),
    )
    assert plain.total == sum(plain.parts().values()) and light.activations < plain.activations / 5
    assert fits_message(plain, 80 * 2**30, "the GPU") is None
    refusal = fits_message(plain, 2 * 2**30, "the GPU")
    assert refusal.startswith("This run needs about") and "lower the batch size" in refusal


# --------------------------------------------------------------------------- a tiny model
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Iterator[Path]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one thread is several times faster here
    yield build_model(tmp_path_factory.mktemp("llm") / "tiny-llama")
    torch.set_num_threads(threads)  # later tests in this process (a straight run vs a worker's) see the default


def _spec(dataset_id: str, target: str, base: Path, **changes):
    from studio.core.spec import RunSpec

    data = {
        "task": "llm_finetune",
        "data": {"dataset_id": dataset_id, "target": target, "val_fraction": 0.05, "test_fraction": 0.05},
        "architecture": {
            "name": "lora",
            "params": {
                "base_model": str(base),
                "rank": 16,
                "max_new_tokens": 6,
                "sample_prompts": 1,
                "lora_dropout": 0.0,
            },
        },
        "optimizer": {"learning_rate": 0.005},
        "training": {"epochs": 25, "batch_size": 4, "device": "cpu"},
        "early_stopping": {"enabled": False},
    }
    spec = RunSpec.from_dict(data)
    return spec.with_changes(**changes) if changes else spec


def _no_runs() -> int:
    import mlflow

    return sum(
        len(mlflow.MlflowClient().search_runs([e.experiment_id]))
        for e in mlflow.MlflowClient().search_experiments()
    )


def test_bad_models_and_chats_without_a_template_are_refused_before_a_run_exists(studio_home, tmp_path, tiny):
    from studio.data import add_data_file
    from studio.engine.training import train

    pairs = add_data_file(write_pairs_csv(tmp_path / "pairs.csv"))
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    (encoder / "model.safetensors").write_bytes(b"")
    plain = build_model(tmp_path / "no-template", chat_template=False)
    chats = add_data_file(write_chat_jsonl(tmp_path / "chats.jsonl"))
    empty = add_data_file(b"prompt,response\na,\nb,\n", filename="empty.csv")
    cases = [
        (_spec(pairs.id, "response", encoder), "is not a language model that writes text"),
        (_spec(pairs.id, "response", Path("SomeOrg/not-here")), "is not on this machine"),
        (_spec(chats.id, "messages", plain), "has no chat template"),
        (_spec(empty.id, "response", tiny), "is empty in every row"),
    ]
    for spec, words in cases:
        with pytest.raises(StudioError) as err:
            train(spec)
        assert words in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert _no_runs() == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny):
    """One LoRA run on the fixed instruction set, through the engine (as the CLI and the worker run it)."""
    folder = tmp_path_factory.mktemp("llm-run")
    home = folder / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("STUDIO_HOME", str(home))
    mp.setenv("MLFLOW_TRACKING_URI", new_store(folder))
    from studio.data import add_data_file
    from studio.engine.training import train

    info = add_data_file(write_pairs_csv(folder / "pairs.csv", repeat=2))
    spec = _spec(info.id, "response", tiny)
    result = train(spec, bundle_out=folder / "model.zip")
    yield result, spec, folder
    mp.undo()


def test_a_lora_run_lowers_the_loss_and_logs_its_curves_and_sample_answers(trained):
    import mlflow

    result, spec, folder = trained
    client = mlflow.MlflowClient(f"sqlite:///{folder}/mlflow.db")
    train_loss = [m.value for m in client.get_metric_history(result.run_id, "train/loss")]
    assert train_loss[-1] < 0.6 * train_loss[0], train_loss
    for name in ("val/loss", "val/perplexity", "train/tokens_per_second"):
        assert client.get_metric_history(result.run_id, name), name
    assert {"test/loss", "test/perplexity", "test/exact_match", "test/token_f1"} <= set(result.test_metrics)
    artifacts = [a.path for a in client.list_artifacts(result.run_id, "llm")]
    assert "llm/samples.json" in artifacts


@pytest.fixture(scope="module")
def outside(trained, tmp_path_factory):
    """The answers of the adapter bundle and of its "merged" download, at temperature 0, loaded with
    ``mlflow.pyfunc`` in ONE fresh process where ``studio`` cannot be imported (its imports of torch,
    transformers and MLflow cost seconds; both bundles share them). The merged bundle answers first,
    while ``peft`` cannot be imported either (never imported in that process) and the base model's folder
    is moved away from where the bundles say; then the folder is moved back, ``peft`` unblocked and the
    adapter bundle (which needs both) answers."""
    from studio.bundle.reader import read_bundle_info
    from studio.modalities.llm.bundle import merge_llm_bundle

    result, spec, folder = trained
    merged = merge_llm_bundle(folder / "model.zip", tmp_path_factory.mktemp("merged") / "merged.zip")
    base = Path(read_bundle_info(merged)["llm"]["base_model"]["path"])
    away = base.with_name(base.name + "-away")
    prompts = [p for p, _ in PAIRS]
    script = (
        "import sys, json, shutil\nfor name in ('studio', 'peft'): sys.modules[name] = None\n"
        "import mlflow, pandas as pd, zipfile, tempfile, glob\n"
        "def answers(bundle):\n"
        "    d = tempfile.mkdtemp(); zipfile.ZipFile(bundle).extractall(d)\n"
        "    m = mlflow.pyfunc.load_model(glob.glob(d + '/**/MLmodel', recursive=True)[0].rsplit('/', 1)[0])\n"
        "    return m.predict(pd.DataFrame({'prompt': json.loads(sys.argv[5])}))['answer'].tolist()\n"
        "shutil.move(sys.argv[3], sys.argv[4])  # the merged model needs no base model\n"
        "merged = answers(sys.argv[2])\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'peft' and sys.modules[m] is not None]\n"
        "shutil.move(sys.argv[4], sys.argv[3]); del sys.modules['peft']\n"
        "print(json.dumps({'adapter': answers(sys.argv[1]), 'merged': merged}))\n"
    )
    try:
        out = run_outside(
            tmp_path_factory.mktemp("outside"), script, timeout=300, env={"OMP_NUM_THREADS": "1"},
            args=[folder / "model.zip", merged, base, away, json.dumps(prompts)],
        )  # fmt: skip
    finally:
        if away.exists() and not base.exists():
            away.rename(base)
    return {"merged_bundle": merged, **json.loads(out.strip().splitlines()[-1])}


def test_the_bundle_holds_only_the_adapter_and_answers_in_a_subprocess_without_the_studio(
    trained, tiny, outside
):
    """The adapter (LoRA tensors only) and the base model's path; loaded with mlflow.pyfunc in a process
    where importing ``studio`` fails, it answers as the studio's own loader does at temperature 0."""
    import zipfile

    import torch

    from lightning_modules.llm.module import exact_match
    from studio.bundle.reader import load_bundle, read_bundle_info

    result, spec, folder = trained
    info = read_bundle_info(folder / "model.zip")
    assert info["kind"] == "llm" and info["llm"]["base_model"]["path"] == str(tiny.resolve())
    with zipfile.ZipFile(folder / "model.zip") as zf:
        member = next(n for n in zf.namelist() if n.endswith("artifacts/weights.pt"))
        with zf.open(member) as f:
            adapter = torch.load(f, weights_only=True)
    assert adapter and all("lora_" in name for name in adapter)  # only the adapter was trained and kept
    prompts = [p for p, _ in PAIRS]
    with load_bundle(folder / "model.zip") as bundle:
        here = bundle.model.predict(pd.DataFrame({"prompt": prompts}))["answer"].tolist()
    learnt = sum(exact_match(a, r) for a, (_, r) in zip(here, PAIRS, strict=True)) / len(PAIRS)
    assert learnt >= 0.9, list(zip(here, PAIRS, strict=True))  # it learnt the instruction set
    assert outside["adapter"] == here


def test_the_merged_bundle_answers_as_the_adapter_bundle_without_the_studio_peft_or_the_base(
    trained, outside
):
    """The "merged" download: the base model with the adapter merged in (peft's merge_and_unload) answers
    the same at temperature 0 as the adapter bundle, loaded with mlflow.pyfunc where ``studio`` and
    ``peft`` cannot be imported and the base model's folder is not where the bundle says (the
    ``outside`` fixture)."""
    import zipfile

    from studio.bundle.reader import load_bundle, read_bundle_info

    result, spec, folder = trained
    prompts = [p for p, _ in PAIRS]
    with load_bundle(folder / "model.zip") as bundle:
        here = bundle.model.predict(pd.DataFrame({"prompt": prompts}))["answer"].tolist()
    merged = outside["merged_bundle"]
    info = read_bundle_info(merged)
    assert info["llm"]["merged"] and info["llm"]["method"] == "lora"
    with zipfile.ZipFile(merged) as zf:
        names = zf.namelist()
    assert any("/files/merged/" in n for n in names) and not any("/files/adapter/" in n for n in names)
    assert outside["merged"] == here


def test_mlflow_models_serve_answers_prompts_with_the_logged_bundle(trained, tmp_path):
    """The bundle logged to the run, unzipped, is what ``mlflow models serve -m FOLDER`` serves: MLflow's
    own scoring app (the one the command runs, called here without a network port) answers a
    ``dataframe_split`` of prompts with the bundle's answers."""
    import zipfile

    import mlflow
    from mlflow.pyfunc import scoring_server
    from starlette.testclient import TestClient

    from studio import tracking

    result, spec, folder = trained
    logged = tracking.download_bundle(result.run_id, str(tmp_path))
    zipfile.ZipFile(logged).extractall(tmp_path / "model")
    (mlmodel,) = list((tmp_path / "model").rglob("MLmodel"))
    model = mlflow.pyfunc.load_model(str(mlmodel.parent))
    prompts = [p for p, _ in PAIRS[:4]]
    with TestClient(scoring_server.init(model)) as client:
        response = client.post(
            "/invocations", json={"dataframe_split": {"columns": ["prompt"], "data": [[p] for p in prompts]}}
        )
    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["predictions"])
    expected = model.predict(pd.DataFrame({"prompt": prompts}))
    assert served["answer"].tolist() == expected["answer"].tolist()
    assert sum(a == r for a, (_, r) in zip(served["answer"], PAIRS, strict=False)) >= 3  # it learnt them


def test_an_answer_streams_piece_by_piece_and_joins_to_the_whole_answer(trained, monkeypatch):
    """The Predict page's stream: the pieces come one by one from the generating thread and make the
    same text as the whole answer, for the fine-tuned and the base model; a failure reaches the reader."""
    from studio.bundle.reader import load_bundle

    result, spec, folder = trained
    prompt = "say hello"  # a three-word answer
    with load_bundle(folder / "model.zip") as bundle:
        predictor = bundle.model.unwrap_python_model().predictor
        for base in (False, True):
            pieces = list(predictor.stream(prompt, max_new_tokens=6, base=base))
            assert len([p for p in pieces if p.strip()]) >= 2, pieces
            assert "".join(pieces).strip() == predictor.answer(prompt, max_new_tokens=6, base=base)[0]
        assert "".join(predictor.stream(prompt, max_new_tokens=6)).strip() == "hello there friend"

        def broken(*args, **kwargs):
            raise RuntimeError("the model broke")

        monkeypatch.setattr(predictor, "_answer", broken)
        with pytest.raises(RuntimeError, match="the model broke"):
            list(predictor.stream(prompt))


def test_predict_writes_a_csv_of_answers(trained, tmp_path):
    from studio.modalities import predict_csv

    result, spec, folder = trained
    prompts = tmp_path / "prompts.csv"
    pd.DataFrame({"prompt": [p for p, _ in PAIRS[:3]]}).to_csv(prompts, index=False)
    out = predict_csv(folder / "model.zip", prompts, tmp_path / "answers.csv")
    written = pd.read_csv(tmp_path / "answers.csv", keep_default_na=False)
    assert list(written.columns) == ["prompt", "answer"] and len(written) == 3
    assert written["answer"].tolist() == out["answer"].tolist()


@pytest.mark.slow
def test_chat_data_trains_too(tmp_path, tiny, studio_home):
    """The same instruction set as chats (JSONL of role/content messages, through the chat template):
    exact match ≥ 0.9 as for the prompt/response pairs (the fast suite trains those)."""
    from lightning_modules.llm.module import exact_match
    from studio.bundle.reader import load_bundle
    from studio.data import add_data_file
    from studio.engine.training import train

    info = add_data_file(write_chat_jsonl(tmp_path / "chats.jsonl", repeat=2))
    spec = _spec(info.id, "messages", tiny)
    train(spec, bundle_out=tmp_path / "model.zip")
    with load_bundle(tmp_path / "model.zip") as bundle:
        answers = bundle.model.predict(pd.DataFrame({"prompt": [p for p, _ in PAIRS]}))["answer"].tolist()
    score = sum(exact_match(a, r) for a, (_, r) in zip(answers, PAIRS, strict=True)) / len(PAIRS)
    assert score >= 0.9, list(zip(answers, PAIRS, strict=True))


def _fit(spec, dataset, epochs: int = 2):
    """Prepare through the kind and fit its module with a bare Lightning Trainer (no MLflow run)."""
    import pytorch_lightning as pl

    from studio.data import load_profile, load_table
    from studio.modalities import modality

    prepared = modality("llm").prepare(spec, dataset, load_table(dataset.id), load_profile(dataset.id))
    module = prepared.lightning_module(spec, prepared.data.steps_per_epoch, 1)
    before = {n: p.detach().clone() for n, p in module.net.named_parameters()}
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=prepared.data)
    return prepared, module, before


def test_lora_changes_only_the_adapter_and_its_state_restores_the_same_model(studio_home, tmp_path, tiny):
    """The base's weights are unchanged (bit for bit), every LoRA matrix B moved; the module's state (what
    checkpoints, the best epoch and a resume hold) is the adapter alone, and loading it into a fresh module
    gives the trained model's outputs exactly."""
    import torch

    from studio.data import add_data_file

    dataset = add_data_file(write_pairs_csv(tmp_path / "pairs.csv"))
    spec = _spec(dataset.id, "response", tiny)
    prepared, module, before = _fit(spec, dataset)
    after = dict(module.net.named_parameters())
    frozen = [n for n in before if "lora_" not in n]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    assert all(not torch.equal(before[n], after[n]) for n in before if "lora_B" in n)
    state = module.state_dict()
    assert state and all("lora_" in k for k in state)
    fresh = prepared.lightning_module(spec, prepared.data.steps_per_epoch, 1)
    fresh.load_state_dict(state)
    batch = next(iter(prepared.data.val_dataloader()))
    module.net.eval(), fresh.net.eval()
    with torch.no_grad():
        assert torch.equal(module.net(**batch).logits, fresh.net(**batch).logits)
    with pytest.raises(RuntimeError, match="lacks"):
        fresh.load_state_dict({})
    # "Bundle the merged model": the adapter merged into the base answers as base + adapter did
    from lightning_modules.llm.module import generate
    from studio.bundle.reader import load_bundle, read_bundle_info
    from studio.core.llm_runtime import prompt_ids
    from studio.modalities.llm.bundle import write_llm_bundle

    prompts = [p for p, _ in PAIRS[:3]]
    ids = [prompt_ids(module.tokenizer, [{"role": "user", "content": p}]) for p in prompts]
    expected = generate(module.net, module.tokenizer, ids, max_new_tokens=6)
    merged = spec.with_changes(**{"architecture.params.merged": True})
    path = write_llm_bundle(
        tmp_path / "merged.zip",
        spec=merged,
        module=module,
        base_folder=tiny,
        shape=prepared.shape,
        metrics={},
    )
    assert read_bundle_info(path)["llm"]["merged"]
    with load_bundle(path) as bundle:
        assert bundle.model.predict(pd.DataFrame({"prompt": prompts}))["answer"].tolist() == expected


def test_full_fine_tuning_trains_every_weight_and_bundles_the_whole_model(studio_home, tmp_path, tiny):
    import torch

    from studio.bundle.reader import load_bundle, read_bundle_info
    from studio.data import add_data_file
    from studio.modalities.llm.bundle import write_llm_bundle

    dataset = add_data_file(write_pairs_csv(tmp_path / "pairs.csv"))
    spec = _spec(
        dataset.id,
        "response",
        tiny,
        **{"architecture.params.method": "full", "optimizer.learning_rate": 0.001},
    )
    prepared, module, before = _fit(spec, dataset, epochs=1)
    after = dict(module.net.named_parameters())
    assert all(not torch.equal(before[n], after[n]) for n in before if n.endswith("proj.weight"))
    path = write_llm_bundle(
        tmp_path / "full.zip", spec=spec, module=module, base_folder=tiny, shape=prepared.shape, metrics={}
    )
    info = read_bundle_info(path)
    assert info["llm"]["merged"] and info["llm"]["method"] == "full"
    prompts = [p for p, _ in PAIRS[:3]]
    from lightning_modules.llm.module import generate
    from studio.core.llm_runtime import prompt_ids

    expected = generate(
        module.net,
        module.tokenizer,
        [prompt_ids(module.tokenizer, [{"role": "user", "content": p}]) for p in prompts],
        max_new_tokens=6,
    )
    with load_bundle(path) as bundle:
        assert bundle.model.predict(pd.DataFrame({"prompt": prompts}))["answer"].tolist() == expected


@pytest.mark.slow
def test_a_stopped_run_resumes_to_the_straight_runs_adapter_and_running_out_of_memory_retries(
    studio_home, tmp_path, tiny, monkeypatch
):
    """Resume continues the same MLflow run from its last epoch's checkpoint (the adapter and the optimiser
    state) and ends with the straight run's adapter; an out-of-memory error retries with half the batch."""
    from studio import tracking
    from studio.data import add_data_file
    from studio.engine.training import TrainingCancelled, train
    from tests.training.test_checkpoints import StopAfterEpoch, max_weight_difference

    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "0")
    info = add_data_file(write_pairs_csv(tmp_path / "pairs.csv"))
    spec = _spec(info.id, "response", tiny, **{"training.epochs": 4, "architecture.params.sample_prompts": 0})
    straight = train(spec, checkpoint_dir=tmp_path / "straight", bundle_out=tmp_path / "straight.zip")
    with pytest.raises(TrainingCancelled):
        train(spec, checkpoint_dir=tmp_path / "stopped", hooks=StopAfterEpoch(2))
    (run,) = [r for r in tracking.list_runs(info.id) if r.run_id != straight.run_id]
    resumed = train(
        spec,
        checkpoint_dir=tmp_path / "stopped",
        resume_run_id=run.run_id,
        bundle_out=tmp_path / "resumed.zip",
    )
    assert resumed.run_id == run.run_id
    assert max_weight_difference(tmp_path / "straight.zip", tmp_path / "resumed.zip") <= 1e-6

    monkeypatch.setenv("STUDIO_TEST_OOM_AT_STEP", "3")
    retried = train(spec)
    assert (
        retried.status == "FINISHED"
        and "batch size 4" in retried.retry_note
        and "2 × 2" in retried.retry_note
    )


@pytest.mark.slow
def test_the_terminal_trains_with_a_base_model_and_predicts_a_csv_of_prompts(studio_home, tmp_path, tiny):
    """``python -m studio train --data pairs.csv --base-model FOLDER`` and ``python -m studio predict``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    pairs = write_pairs_csv(tmp_path / "pairs.csv", repeat=2)
    done = subprocess.run(
        [sys.executable, "-m", "studio", "train", "--data", str(pairs), "--base-model", str(tiny), "--epochs", "25",
         "--lr", "0.005", "--batch-size", "4", "--quiet", "--bundle-out", str(tmp_path / "model.zip"),
         "--set", "architecture.params.max_new_tokens=6", "--set", "architecture.params.lora_dropout=0",
         "--set", "early_stopping.enabled=false", "--set", "data.val_fraction=0.05", "--set", "data.test_fraction=0.05"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Training lora on" in done.stdout and "test/token_f1" in done.stdout
    prompts = tmp_path / "prompts.csv"
    pd.DataFrame({"prompt": [p for p, _ in PAIRS]}).to_csv(prompts, index=False)
    done = subprocess.run(
        [sys.executable, "-m", "studio", "predict", str(tmp_path / "model.zip"), str(prompts), "--out",
         str(tmp_path / "answers.csv")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answers = pd.read_csv(tmp_path / "answers.csv", keep_default_na=False)["answer"].tolist()
    assert sum(a == r for a, (_, r) in zip(answers, PAIRS, strict=True)) >= 18


def test_a_jsonl_line_that_is_not_json_stops_the_terminal_in_one_line(studio_home, tmp_path, tiny):
    from studio.cli.main import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\nnot json\n')
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", "--data", str(bad), "--base-model", str(tiny)])
    assert code == 2
    assert (
        err.getvalue()
        == "error: Line 2 of 'bad.jsonl' is not JSON (Expecting value); every line of a JSONL file must be one JSON object.\n"
    )
