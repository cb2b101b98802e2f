"""Fine-tuning a language model in a real browser, as a new user goes: upload a JSONL of instructions,
read what the Data page says of it, fine-tune the tiny Llama of the tests (a local folder as the base
model) with LoRA from the Train page, watch the run finish with its answers after each epoch, then ask
the model on the Predict page, beside the base model.

Screenshots go to ``test-artifacts/screenshots/llm-*.png``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_browser import add_file, open_page, settle, shoot, train_to_the_end
from tests.llm.tiny import PAIRS, build_model

pytestmark = pytest.mark.e2e


def write_instructions(path: Path, repeat: int = 2) -> Path:
    rows = [{"instruction": p, "output": a} for p, a in PAIRS] * repeat
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


def fill_number(page, label: str, value: str) -> None:
    box = page.get_by_role("spinbutton", name=label, exact=True)
    box.fill(value)
    box.press("Enter")
    settle(page)


def test_upload_instructions_fine_tune_a_tiny_model_and_ask_it(studio, page, screenshots, tmp_path):
    import torch


    torch.set_num_threads(1)
    model = build_model(tmp_path / "tiny-llama")
    examples = write_instructions(tmp_path / "instructions.jsonl")
    studio.wait_for("is ready", timeout=120)
    page.goto(studio.url)
    add_file(page, examples)
    page.get_by_text("Added 'instructions'").wait_for()
    page.get_by_text("The studio reads this as examples to fine-tune a language model on").wait_for()
    page.get_by_role("heading", name="A few examples").wait_for()
    page.locator(".st-key-llm-example-1").get_by_text(PAIRS[0][0], exact=True).wait_for()
    assert page.get_by_text("Suggested target").count() == 0
    shoot(page, screenshots, "llm-1-data")

    open_page(page, "Train")
    task = page.locator(".st-key-train_task input[role=combobox]").input_value()
    assert task.startswith("Fine-tune a language model")
    base = page.locator(".st-key-train__arch_lora__base_model input")
    base.fill(str(model))
    base.press("Enter")
    settle(page)
    fill_number(page, "Epochs (at most)", "20")
    fill_number(page, "Batch size (0 = automatic)", "4")
    fill_number(page, "Learning rate", "0.005")
    page.get_by_text("prompt/response pairs").first.wait_for()
    shoot(page, screenshots, "llm-2-train")

    finished = train_to_the_end(page, 400_000)
    assert finished.spec.task == "llm_finetune" and finished.spec.architecture.name == "lora"
    assert finished.spec.architecture.params["base_model"] == str(model)
    page.get_by_role("heading", name="How its answers changed").wait_for()
    page.get_by_text("Perplexity (lower is better)").wait_for()  # the kind's own metric beside the loss
    shoot(page, screenshots, "llm-3-run")

    open_page(page, "Predict")
    page.get_by_text("Answers prompts: fine-tuned from").wait_for()
    page.locator(".st-key-llm-prompt textarea").fill(PAIRS[2][0])
    page.locator(".st-key-llm-compare label").click()
    settle(page)
    page.locator(".st-key-llm-answer button").click()
    page.get_by_text("Base model", exact=True).wait_for(timeout=120_000)
    settle(page)
    answers = page.locator('[data-testid="stText"]').all_inner_texts()
    assert len(answers) >= 2 and all(a.strip() and "▌" not in a for a in answers[-2:]), answers
    shoot(page, screenshots, "llm-4-predict")
