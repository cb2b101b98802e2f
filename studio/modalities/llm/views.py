"""The language-model kind's parts of the pages: the Train form's notes (the data's shape, token counts
with the chosen model's tokenizer, examples that will be cut, duplicates, empty answers), what stops a run
before it starts (no base model here, chats without a chat template, more memory than the device has), the
run page's answers to held-out prompts after each epoch, and the Predict page's prompt box (temperature,
top-p, length; base and fine-tuned side by side) and CSV of prompts. Imported by the pages only; torch,
transformers and peft are imported only when a model answers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from studio import jobs
from studio.app import forms, ui
from studio.app.predict_view import loaded_bundle
from studio.app.table_form import TableForm
from studio.core.errors import StudioError
from studio.core.spec import RunSpec
from studio.modalities.llm import hub, models, shapes
from studio.modalities.llm.registry import ARCHITECTURE

ARCH_KEY = f"{forms.KEY_PREFIX}arch_{ARCHITECTURE}__"


def _note(message: str, action: str, blocks: bool = False) -> dict[str, Any]:
    return {"message": message, "action": action, "blocks": blocks}


@st.cache_data(ttl=60, show_spinner=False, max_entries=8)
def data_report(home: str, dataset_id: str, base_model: str, max_length: int) -> dict[str, Any]:
    """The data's report with the base model's tokenizer (cached; ``home`` keys the studio's folder)."""
    table = ui.load_table(dataset_id)
    folder = models.find_base_model(base_model) if base_model else None
    counter = models.token_counter(folder) if folder is not None else None
    report = shapes.data_report(table, counter, max_length)
    report["tokenizer"] = str(folder) if counter is not None else None
    return report


def report_notes(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report as the Train page's notes."""
    notes = [
        _note(
            f"The data is {report['description']}: {report['examples']:,} examples.",
            "Trains on every example with an answer; the loss counts the answers only.",
        )
    ]
    if report.get("tokens"):
        counts = sorted(report["tokens"])
        median, high = counts[len(counts) // 2], counts[min(len(counts) - 1, int(0.9 * len(counts)))]
        notes.append(
            _note(
                f"Tokens per example with this model's tokenizer: median {median:,}, 90% at most {high:,}, the longest "
                f"{report['longest']:,} (example {report['longest_example'] + 1:,}).",
                "Memory and time grow with the longest examples in a batch.",
            )
        )
        if report.get("cut"):
            notes.append(
                _note(
                    f"{report['cut']:,} examples are longer than {report['max_length']:,} tokens.",
                    "They are cut to that length (raise 'Most tokens per example' to keep more of them).",
                )
            )
    if report["duplicates"]:
        notes.append(
            _note(
                f"{report['duplicates']:,} examples repeat an earlier one exactly.",
                "They are kept: the model sees them more often.",
            )
        )
    if report["empty_answers"]:
        blocks = report["empty_answers"] == report["examples"]
        notes.append(
            _note(
                f"{report['empty_answers']:,} examples have an empty answer.",
                "Nothing: there is nothing to learn." if blocks else "They are left out.",
                blocks,
            )
        )
    return notes


class LLMForm(TableForm):
    """Examples of a language model: notes from the data report, blockers from the base model and the
    memory estimate, a time guess for a CPU."""

    task = "llm_finetune"

    def data_notes(self, profile: dict[str, Any], target_notes: Any) -> list[dict[str, Any]]:
        state = st.session_state
        dataset_id = state.get("current_dataset")
        if not dataset_id:
            return []
        base = str(state.get(ARCH_KEY + "base_model") or "")
        length = int(state.get(ARCH_KEY + "max_length") or 512)
        try:
            return report_notes(data_report(str(ui.studio_home()), dataset_id, base, length))
        except StudioError as err:
            return [_note(str(err), "Nothing: this data cannot fine-tune a language model.", True)]

    def blockers(self, spec: RunSpec) -> list[str]:
        params = spec.architecture.params
        base = params["base_model"]
        folder = models.find_base_model(base)
        if folder is None:
            note, blocks = base_model_note(base)
            return [note] if blocks and note else []
        try:
            models.check_causal_lm(folder)
            estimate, available, device, gpu = memory_estimate(spec, folder)
        except StudioError as err:
            return [str(err)]
        devices = spec.training.devices
        four_bit = models.four_bit_problem(
            params, cuda=gpu, devices=1 if devices in ("1", "auto") else int(devices)
        )
        if four_bit:
            return [four_bit]
        refusal = models.fits_message(estimate, available, device)
        return [refusal] if refusal else []

    def model_notes(self, spec: RunSpec) -> list[str]:
        """Where the base model comes from when that is worth saying: already in the Hugging Face cache, or
        which files a download fetches and how big (the Hub is asked; nothing is downloaded here)."""
        note, blocks = base_model_note(spec.architecture.params["base_model"])
        return [note] if note and not blocks else []

    def time_guess(
        self, spec: RunSpec, profile: dict[str, Any], rows: int, n_columns: int, on_gpu: bool
    ) -> forms.TimeEstimate:
        folder = models.find_base_model(spec.architecture.params["base_model"])
        if folder is None:
            return forms.TimeEstimate(0.0, "unknown until the base model is on this machine")
        estimate, available, device, gpu = memory_estimate(spec, folder)
        config = models.read_config(folder)
        length = min(int(spec.architecture.params["max_length"]), 256)
        train = rows * (1 - spec.data.val_fraction - spec.data.test_fraction)
        memory = (
            f"needs about {models.human_bytes(estimate.total)} of memory "
            f"({', '.join(f'{k} {models.human_bytes(v)}' for k, v in estimate.parts().items() if v)}) "
            f"of {models.human_bytes(available or 0)} on {device}"
        )
        if gpu:
            return forms.TimeEstimate(0.0, f"a GPU run; it {memory}")
        seconds = models.cpu_seconds_per_epoch(
            config, int(train * length), spec.architecture.params["method"]
        )
        seconds *= spec.training.epochs
        return forms.TimeEstimate(
            seconds,
            f"on this CPU about {forms_duration(seconds)} (slow: a GPU is "
            f"typically 50–100× faster); it {memory}",
        )


@st.cache_data(ttl=300, show_spinner="Asking the Hugging Face Hub what the model holds…", max_entries=16)
def _hub_note(ref: str) -> tuple[str | None, bool]:
    return models.where_it_comes_from(ref)


def base_model_note(ref: str) -> tuple[str | None, bool]:
    """:func:`studio.modalities.llm.models.where_it_comes_from`, the Hub's answer kept five minutes (the page
    reruns on every click; the local checks are not kept)."""
    ref = str(ref or "").strip()
    online = ref and hub.looks_like_hub_id(ref) and models.downloads_allowed()
    if online and models.find_base_model(ref) is None:
        return _hub_note(ref)
    return models.where_it_comes_from(ref)


def forms_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def memory_estimate(spec: RunSpec, folder: Path) -> tuple[Any, int | None, str, bool]:
    params = spec.architecture.params
    config = models.read_config(folder)
    available, device, gpu = models.device_memory_now()
    if spec.training.device == "cpu":
        available, device, gpu = available, "this machine's free memory", False
    bf16 = gpu and spec.training.precision == "bf16-mixed"
    estimate = models.estimate_memory(
        config,
        method=params["method"],
        rank=int(params["rank"]),
        targets=models.target_modules(config, params["target_modules"]),
        batch_size=int(spec.training.batch_size) or 8,
        length=int(params["max_length"]),
        checkpointing=bool(params["gradient_checkpointing"]),
        weight_bytes=2 if bf16 else 4,
        four_bit=bool(params.get("load_in_4bit")) and gpu,
    )
    return estimate, available, device, gpu


FORM = LLMForm()
DEFAULTS_SUIT = "fine-tuning runs"


# --------------------------------------------------------------------------- the run page
def _table(logged: dict[str, Any] | None) -> pd.DataFrame:
    if not logged:
        return pd.DataFrame()
    return pd.DataFrame(logged.get("data", []), columns=logged.get("columns", []))


@st.cache_data(ttl=10, show_spinner=False, max_entries=8)
def sample_answers(run_id: str) -> pd.DataFrame:
    """The held-out prompts' answers, every epoch: the final table, or the epochs logged so far."""
    from studio import tracking
    from studio.app.images_view import _download_json
    from studio.modalities.llm.modality import SAMPLES_ARTIFACT

    final = _table(_download_json(run_id, SAMPLES_ARTIFACT))
    if not final.empty:
        return final
    try:
        logged = [a.path for a in tracking.client().list_artifacts(run_id, "llm/samples")]
    except Exception:
        return pd.DataFrame()
    return pd.concat([_table(_download_json(run_id, p)) for p in sorted(logged)] or [pd.DataFrame()])


def run_results(job: jobs.Job) -> None:
    """What the model answers to held-out prompts after each epoch, and on the test examples."""
    from studio.app.images_view import _download_json
    from studio.modalities.llm.modality import TEST_ANSWERS_ARTIFACT

    st.subheader("How its answers changed")
    if not job.mlflow_run_id:
        st.info("The run has not started yet.")
        return
    samples = sample_answers(job.mlflow_run_id)
    if samples.empty:
        st.info("No answers yet: they appear after the first epoch.")
    else:
        st.caption("Held-out prompts (never trained on), answered after every epoch.")
        st.dataframe(samples, hide_index=True, key="llm-samples")
    tests = _table(_download_json(job.mlflow_run_id, TEST_ANSWERS_ARTIFACT))
    if not tests.empty:
        st.subheader("Answers to the test examples")
        st.dataframe(tests, hide_index=True, key="llm-test-answers")


MERGED_FILE = "merged-model.zip"


def merged_bundle(job: jobs.Job, bundle: Path) -> Path:
    """The job's merged bundle (the base model with the adapter merged in), made once from its adapter
    bundle in a separate process (merging loads the whole model: torch stays out of the page) and kept
    in the job's downloads folder. A :class:`StudioError` in plain words when it cannot be made."""
    import subprocess
    import sys

    from studio.core import settings
    from studio.core.errors import BundleError

    out = settings.studio_home() / "downloads" / job.id / MERGED_FILE
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "studio.modalities.llm.bundle", str(bundle), str(out)],
        capture_output=True,
        text=True,
        cwd=str(Path(__file__).resolve().parents[3]),
    )
    if done.returncode != 0 or not out.is_file():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        said = lines[-1].removeprefix("error: ") if lines else f"exit code {done.returncode}"
        raise BundleError(f"The merged model could not be made: {said}")
    return out


def more_downloads(job: jobs.Job, bundle: Path, name: str) -> None:
    """The run page's "merged" download beside the adapter bundle: the whole model, which answers
    without the base model (made on request: it is as large as the base model)."""
    import json
    import zipfile

    with zipfile.ZipFile(bundle) as zf:
        member = next((n for n in zf.namelist() if n.endswith("studio_model.json")), None)
        info = json.loads(zf.read(member)) if member else {}
    if info.get("llm", {}).get("merged", True):
        return  # the bundle holds the whole model already
    made = st.session_state.get(f"llm-merged-{job.id}")
    if made is None:
        st.caption(
            "The model above is a LoRA adapter: it needs the base model on the machine that uses it. The "
            "merged model holds the base model with the adapter merged in (as large as the base model)."
        )
        if not st.button("Make the merged model", key="llm-make-merged", icon=":material/merge:"):
            return
        try:
            with st.spinner("Merging the adapter into the base model…"):
                made = str(merged_bundle(job, bundle))
        except StudioError as err:
            ui.show_error(err)
            return
        st.session_state[f"llm-merged-{job.id}"] = made
    st.download_button(
        "Download the merged model (.zip)",
        data=Path(made).read_bytes,
        file_name=name.replace("-model.zip", "-merged-model.zip"),
        mime="application/zip",
        key="download-merged-model",
        icon=":material/download:",
        on_click="ignore",
    )


# --------------------------------------------------------------------------- the predict page
def model_summary(info: dict[str, Any]) -> str:
    """One line of Markdown about a language model's bundle: what it does and the base model it needs."""
    llm = info.get("llm", {})
    base = llm.get("base_model", {})
    name = base.get("id") or base.get("path") or "?"
    if llm.get("merged"):
        how = "the whole model is in the bundle"
    elif llm.get("method") == "full":
        how = "every weight trained"
    else:
        how = "a LoRA adapter; the base model must be on this machine"
    return f"Answers prompts: fine-tuned from **{ui.as_text(name)}** ({how})."


def _predictor(model_path: Path) -> Any:
    return loaded_bundle(str(model_path), model_path.stat().st_mtime).model.unwrap_python_model().predictor


def write_answer(place: Any, title: str, predictor: Any, prompt: str, settings: dict[str, Any]) -> str:
    """The answer to ``prompt`` written into ``place`` as the model makes it (as text, never Markdown)."""
    place.markdown(title)
    slot = place.empty()
    slot.caption("Writing…")
    if not hasattr(predictor, "stream"):  # a bundle from before answers streamed
        answer = predictor.answer(prompt, **settings)[0]
        slot.text(answer)
        return answer
    answer = ""
    for piece in predictor.stream(prompt, **settings):
        answer += piece
        slot.text(answer + " ▌")
    answer = answer.strip()
    slot.text(answer)
    return answer


def predict_inputs(model_path: Path, model_info: dict[str, Any]) -> None:
    """A prompt box with the sampling settings (and the base model's answer beside the fine-tuned one's),
    then a CSV of prompts answered into a CSV."""
    llm = model_info.get("llm", {})
    st.subheader("2. Ask it")
    prompt = st.text_area("Prompt", key="llm-prompt", height=120, placeholder="Type a prompt")
    left, middle, right = st.columns(3)
    temperature = left.slider(
        "Temperature",
        0.0,
        2.0,
        0.0,
        0.05,
        key="llm-temperature",
        help="0 always gives the most likely answer; higher is more varied.",
    )
    top_p = middle.slider(
        "Top-p",
        0.05,
        1.0,
        1.0,
        0.05,
        key="llm-top-p",
        help="Samples only among the most likely words that together make up this share.",
    )
    length = right.number_input("Most tokens", 1, 4096, int(llm.get("max_new_tokens", 64)), key="llm-length")
    compare = st.toggle(
        "Also answer with the base model",
        key="llm-compare",
        disabled=bool(llm.get("merged")),
        help="The same prompt answered by the model before fine-tuning, beside this one's answer.",
    )
    if st.button("Answer", key="llm-answer", type="primary", icon=":material/chat:"):
        if not prompt.strip():
            st.info("Type a prompt first.", icon=":material/edit:")
        else:
            settings = {"temperature": temperature, "top_p": top_p, "max_new_tokens": int(length)}
            try:
                with st.spinner("Opening the model…"):
                    predictor = _predictor(model_path)
                one, two = st.columns(2) if compare else (st.container(), None)
                write_answer(one, "**Fine-tuned model**", predictor, prompt, settings)
                if two is not None:
                    write_answer(two, "**Base model**", predictor, prompt, {**settings, "base": True})
            except (StudioError, FileNotFoundError) as err:
                ui.show_error(err)
    st.subheader("3. Or answer a CSV of prompts")
    upload = st.file_uploader("A CSV with a 'prompt' column", type=["csv"], key="llm-prompts-upload")
    if upload is not None and st.button("Answer them", key="llm-answer-csv", icon=":material/table:"):
        try:
            frame = pd.read_csv(io.BytesIO(upload.getvalue()))
            with st.spinner(f"Answering {len(frame):,} prompts…"):
                answers = _predictor(model_path).predict_input(frame)
        except (StudioError, ValueError, FileNotFoundError) as err:
            ui.show_error(err)
        else:
            st.dataframe(answers, hide_index=True, key="llm-answers")
            st.download_button(
                "Download the answers (CSV)",
                answers.to_csv(index=False).encode("utf-8"),
                "answers.csv",
                "text/csv",
                key="llm-answers-download",
            )


# --------------------------------------------------------------------------- the data page
EXAMPLES_SHOWN = 3
EXAMPLE_FILES = (".jsonl", ".json", ".ndjson")


def examples_reading(source_file: str, table: pd.DataFrame, profile: dict[str, Any]) -> dict[str, Any] | None:
    """The data set read as language-model examples (its profile's reading; read now for a data set
    stored before profiles had one), or ``None`` for a table to learn a column of."""
    if "llm" in profile:
        return profile["llm"]
    return shapes.reading(table, profile, examples_file=source_file.lower().endswith(EXAMPLE_FILES))


def _lengths(what: str, stats: dict[str, Any]) -> str:
    from studio.core.text import counted

    return (
        f"{what}: median {counted(round(stats['words_median']), 'word')}, 90% at most "
        f"{stats['words_p90']:,}, the longest {stats['words_max']:,}"
    )


def example_texts(
    table: pd.DataFrame, reading: dict[str, Any], n: int = EXAMPLES_SHOWN
) -> list[tuple[str, str]]:
    """The first ``n`` examples as (what the model reads, what it learns to write), in plain text."""
    shape = shapes.shape_or_error(list(table.columns))
    found = shapes.examples(table.head(n), shape)
    out = []
    for example in found:
        if reading["shape"] == "prompt_response" and len(example.messages) == 1:
            prompt = example.messages[0]["content"]
        else:
            prompt = "\n".join(f"{m['role']}: {m['content']}" for m in example.messages)
        out.append((prompt, example.answer))
    return out


def data_section(info: Any, table: pd.DataFrame, profile: dict[str, Any]) -> bool:
    """The Data page's section for a table of language-model examples (its :func:`data_page_section`);
    ``False``, showing nothing, for a table to learn a column of."""
    reading = examples_reading(info.source_file, table, profile)
    if reading is None:
        return False
    data_page_section(table, reading)
    return True


def picked_words(profile: dict[str, Any]) -> str | None:
    """What the Train page has already picked for usable examples (the Data page's next step)."""
    reading = profile.get("llm")
    if reading and "problem" not in reading:
        return " and the task *Fine-tune a language model* are already picked; choose a base model"
    return None


def data_page_section(table: pd.DataFrame, reading: dict[str, Any]) -> None:
    """Examples to fine-tune a language model on: the shape found, which fields are the prompt and the
    answer, how long they are (in words: tokens depend on the model, and the Train page counts them
    once a base model is chosen), what was noticed, and a few examples, as text."""
    from studio.app import charts

    st.markdown(
        ui.as_text(
            f"The studio reads this as examples to fine-tune a language model on: {reading['description']}."
        )
    )
    if reading.get("problem"):
        ui.show_error(StudioError(reading["problem"]))
        return
    prompt_field, answer_field = shapes.fields_in_words(reading)
    count, prompt_column, answer_column = st.columns([1, 2, 2])
    count.metric("Examples", f"{reading['examples']:,}")
    prompt_column.markdown(f"**The prompt**  \n{ui.as_text(prompt_field)}")
    answer_column.markdown(f"**The answer it learns**  \n{ui.as_text(answer_field)}")
    lengths = [("Prompts", reading.get("prompt_words")), ("Answers", reading["answer_words"])]
    lengths = [(what, stats) for what, stats in lengths if stats]
    st.subheader("How long they are")
    st.markdown(
        "; ".join(_lengths(what, stats) for what, stats in lengths)
        + ". A word is usually one or two tokens; the Train page counts the tokens with the chosen model's "
        "tokenizer and says how many examples are longer than the most tokens per example."
    )
    for column, (what, stats) in zip(st.columns(len(lengths)), lengths, strict=True):
        histogram = stats.get("length_histogram") or {"edges": [], "counts": []}
        column.caption(f"{what}: words per example")
        column.plotly_chart(
            charts.text_lengths_figure(histogram["edges"], histogram["counts"], height=220),
            key=f"llm-data-{what.lower()}",
            config={"displaylogo": False},
        )
    st.subheader("What the studio noticed")
    noticed = shapes.examples_notes(reading)
    if noticed:
        ui.show_warnings(noticed)
    else:
        st.success(
            "Nothing to worry about: no repeated examples and no empty answers.", icon=":material/check:"
        )
    st.subheader("A few examples")
    for number, (prompt, answer) in enumerate(example_texts(table, reading), start=1):
        with st.container(border=True, key=f"llm-example-{number}"):
            if not prompt:  # plain text: all of it is learnt
                st.caption(f"Example {number}")
                st.text(answer)
                continue
            left, right = st.columns(2)
            left.caption(f"Example {number}: the prompt")
            left.text(prompt)
            right.caption("The answer")
            right.text(answer)
    st.caption(
        "Fine-tune a language model on them: on the Train page the task 'Fine-tune a language model' is "
        "already picked; choose a base model (a folder on this machine, or a Hugging Face id) and press Train."
    )
