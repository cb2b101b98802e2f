"""The language-model kind on the pages: a fine-tuning job run by the worker's own code, the run page's
answers after each epoch, the Predict page's prompt box (the fine-tuned answer beside the base model's) and
its CSV of prompts, and the Train form's notes and blockers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio import jobs
from tests.llm.test_llm import _spec
from tests.llm.tiny import PAIRS, build_model, write_pairs_csv
from tests.mlflow_store import new_store
from tests.pages.test_runs_page import run_in_process

PAGES = Path(__file__).resolve().parents[2] / "pages"


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("llm-pages")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(root / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{root}/mlruns"))
        from studio.data import add_data_file

        model = build_model(root / "tiny-llama")
        dataset = add_data_file(write_pairs_csv(root / "pairs.csv", repeat=2))
        done = run_in_process(_spec(dataset.id, "response", model))
        assert done.state == jobs.SUCCEEDED, done.reason
        try:
            yield done, model, dataset
        finally:
            torch.set_num_threads(threads)


def test_the_run_page_shows_the_answers_after_each_epoch(job):
    done, _, _ = job
    at = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=90)
    at.query_params["job"] = done.id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value == "How its answers changed" for s in at.subheader)
    samples = next(d.value for d in at.dataframe if "epoch" in d.value.columns)
    assert sorted(set(samples["epoch"])) == list(range(1, 26))  # one held-out prompt, every epoch


def test_the_run_page_makes_the_merged_model_to_download(job):
    """The "Make the merged model" button merges the adapter into the base model in its own process,
    then offers the merged bundle (it holds the whole model) beside the adapter bundle."""
    from studio.bundle.reader import read_bundle_info
    from studio.core import settings

    done, _, _ = job
    at = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=180)
    at.query_params["job"] = done.id
    at.run()
    assert not [b for b in at.get("download_button") if b.proto.id.endswith("download-merged-model")]
    at.button(key="llm-make-merged").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download the merged model (.zip)" in labels and "Download the model (.zip)" in labels
    merged = settings.studio_home() / "downloads" / done.id / "merged-model.zip"
    assert read_bundle_info(merged)["llm"]["merged"]


def test_merging_without_the_base_model_says_so_in_one_line(job, tmp_path, monkeypatch, capsys):
    from studio.modalities.llm.bundle import main

    done, model, _ = job
    monkeypatch.setenv("STUDIO_LLM_BASE_MODEL", "")
    moved = model.with_name(model.name + "-away")
    model.rename(moved)
    try:
        assert main([done.bundle_path, str(tmp_path / "merged.zip")]) == 2
    finally:
        moved.rename(model)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "This model is an adapter for the base model" in err and "is not on this machine" in err
    assert not (tmp_path / "merged.zip").exists()


def test_the_predict_page_answers_a_prompt_beside_the_base_model_and_a_csv_of_prompts(job):
    done, _, _ = job
    at = AppTest.from_file(str(PAGES / "predict.py"), default_timeout=120)
    at.query_params["job"] = done.id
    at.run()
    at.text_area(key="llm-prompt").set_value(PAIRS[2][0]).run()
    at.toggle(key="llm-compare").set_value(True).run()
    at.button(key="llm-answer").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    labels = [m.value for m in at.markdown]
    assert "**Fine-tuned model**" in labels and "**Base model**" in labels
    tuned, base = (t.value for t in at.text[-2:])
    assert tuned == PAIRS[2][1] and base != tuned  # the fine-tuned model learnt it; the base did not
    rows = "prompt\n" + "\n".join(p for p, _ in PAIRS[:3])
    at.file_uploader(key="llm-prompts-upload").upload("prompts.csv", rows.encode(), "text/csv").run()
    at.button(key="llm-answer-csv").click().run()
    answers = at.dataframe[-1].value
    assert answers["answer"].tolist() == [a for _, a in PAIRS[:3]]


def test_the_train_form_notes_the_data_and_blocks_an_absent_base_model(job):
    from studio.core.settings import studio_home
    from studio.core.spec import RunSpec
    from studio.modalities.llm.views import FORM, data_report, report_notes

    _, model, dataset = job
    report = data_report(str(studio_home()), dataset.id, str(model), 8)
    assert report["shape"] == "prompt_response" and report["examples"] == 2 * len(PAIRS)
    assert report["duplicates"] == len(PAIRS) and report["tokenizer"] == str(model)
    assert report["cut"] == sum(1 for t in report["tokens"] if t > 8) > 0
    notes = [n["message"] for n in report_notes(report)]
    assert notes[0].startswith("The data is prompt/response pairs (prompt: 'prompt', answer: 'response')")
    assert any(n.startswith("Tokens per example with this model's tokenizer: median") for n in notes)
    spec = RunSpec.from_dict(
        {
            "task": "llm_finetune",
            "data": {"dataset_id": dataset.id, "target": "response"},
            "architecture": {"name": "lora", "params": {"base_model": "SomeOrg/absent-model"}},
        }
    )
    (blocker,) = FORM.blockers(spec)
    assert "is not on this machine" in blocker
    fine = spec.with_changes(**{"architecture.params.base_model": str(model)})
    assert FORM.blockers(fine) == []
    huge = fine.with_changes(**{"training.batch_size": 65536, "architecture.params.max_length": 32768})
    (refusal,) = FORM.blockers(huge)
    assert refusal.startswith("This run needs about")


def test_the_train_form_for_fine_tuning_shows_the_data_report_and_the_memory(job):
    """The Train page with the task picked: the base model is a text box, the notes say the shape and
    token counts, and 'How long' says the memory it needs."""
    _, model, dataset = job
    at = AppTest.from_file(str(PAGES / "train.py"), default_timeout=90).run()
    at.selectbox(key="train_dataset").set_value(dataset.id).run()
    at.selectbox(key="train_target").set_value("response").run()
    at.selectbox(key="train_task").set_value("llm_finetune").run()
    at.text_input(key="train__arch_lora__base_model").set_value(str(model)).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(w.value for w in at.warning) + " ".join(m.value for m in at.markdown)
    assert "prompt/response pairs" in shown and "Tokens per example with this model" in shown
    assert "needs about" in shown and "of memory" in shown
    at.text_input(key="train__arch_lora__base_model").set_value("SomeOrg/absent-model").run()
    assert any("is not on this machine" in w.value for w in at.warning)


def test_the_data_page_adds_a_jsonl_of_chats_and_says_what_it_holds(studio_home, tmp_path):
    from tests.llm.tiny import write_chat_jsonl

    at = AppTest.from_file(str(PAGES / "data.py"), default_timeout=60).run()
    at.file_uploader(key="data_upload").upload(
        "bad.jsonl", b'{"prompt": "a"}\n{oops\n', "application/json"
    ).run()
    at.button(key="data_add_upload").click().run()
    assert [e.value for e in at.error] == [
        "Line 2 of 'bad.jsonl' is not JSON (Expecting property name enclosed in double quotes); every line of a "
        "JSONL file must be one JSON object."
    ]
    data = write_chat_jsonl(tmp_path / "chats.jsonl", repeat=2).read_bytes()
    two_turns = [
        {"role": "user", "content": "say *hello*"},
        {"role": "assistant", "content": "hello there [friend](http://x)"},
        {"role": "user", "content": "say goodbye"},
        {"role": "assistant", "content": "goodbye my friend"},
    ]
    data = json.dumps({"messages": two_turns}).encode() + b"\n" + data
    at.file_uploader(key="data_upload").clear().upload("chats.jsonl", data, "application/json").run()
    at.button(key="data_add_upload").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Examples": str(2 * len(PAIRS) + 1)}  # no table metrics, no suggested target
    shown = " ".join(m.value for m in at.markdown)
    assert "examples to fine-tune a language model on: chats" in shown and "Suggested target" not in shown
    assert "the assistant's messages" in shown and "median" in shown and "words" in shown
    warnings = " ".join(w.value for w in at.warning)
    assert f"{len(PAIRS)} examples repeat an earlier one" in warnings
    assert "1 chat holds several assistant answers" in warnings
    texts = [t.value for t in at.text]  # the examples as text, never Markdown
    assert texts[:2] == ["user: say *hello*\nassistant: hello there [friend](http://x)\nuser: say goodbye",
                         "goodbye my friend"]  # fmt: skip
    assert "Fine-tune a language model" in at.info[-1].value


def test_the_train_page_picks_fine_tuning_for_a_jsonl_of_examples(studio_home, tmp_path):
    from studio.data import add_data_file
    from tests.llm.tiny import write_chat_jsonl

    info = add_data_file(write_chat_jsonl(tmp_path / "chats.jsonl"))
    at = AppTest.from_file(str(PAGES / "train.py"), default_timeout=60).run()
    at.selectbox(key="train_dataset").set_value(info.id).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="train_task").value == "llm_finetune"
    assert at.selectbox(key="train_architecture").value == "lora"
