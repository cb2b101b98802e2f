"""What a table of language-model examples holds, recognised from its column names without questions:

* ``prompt_response``: a prompt column (prompt, question, query, instruction) and an answer column
  (response, answer, output, completion); an ``input`` column beside an ``instruction`` is added to the
  prompt (the Alpaca shape); a ``system`` column, when there, is the system message.
* ``chat``: a ``messages`` (or ``conversations``) column whose cells are lists of ``{"role", "content"}``
  (JSONL), or those lists written as JSON text (CSV). The last assistant message is the answer.
* ``text``: one ``text`` column (or the table's only column): continued training on plain text.

Every example becomes a list of chat messages (``text``: none, just the text), which the tokenizer's chat
template (or the studio's plain format when it has none) turns into tokens. Also the JSONL reader and the
data's profile (counts, duplicates, empty answers, token lengths). Cheap to import: json and pandas only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from studio.core.errors import DatasetError

PROMPT_NAMES = ("prompt", "question", "query", "instruction")
ANSWER_NAMES = ("response", "answer", "output", "completion")
CHAT_NAMES = ("messages", "conversations", "conversation")
TEXT_NAMES = ("text", "content", "document")
ROLES = {"system", "user", "assistant"}
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}


@dataclass(frozen=True)
class Shape:
    kind: str
    """``prompt_response``, ``chat`` or ``text``."""
    answer: str
    """The column the model learns to write (the answer column; ``messages`` for chats; the text)."""
    prompt: str | None = None
    extra_input: str | None = None
    """The Alpaca ``input`` column, added to the instruction."""
    system: str | None = None

    def describe(self) -> str:
        if self.kind == "chat":
            return f"chats (a '{self.answer}' column of role/content messages; every assistant message is learnt)"
        if self.kind == "text":
            return f"plain text (column '{self.answer}'; the model learns to continue it)"
        extra = f" plus '{self.extra_input}'" if self.extra_input else ""
        return f"prompt/response pairs (prompt: '{self.prompt}'{extra}, answer: '{self.answer}')"


def _find(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {str(c).strip().lower(): c for c in columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def detect_shape(columns: list[str]) -> Shape | None:
    """The shape of a table with these columns, or ``None`` when it is none of the three."""
    chat = _find(columns, CHAT_NAMES)
    if chat is not None:
        return Shape("chat", chat)
    prompt, answer = _find(columns, PROMPT_NAMES), _find(columns, ANSWER_NAMES)
    extra = _find(columns, ("input", "context"))
    if prompt is None and extra is not None and answer is not None and extra != answer:
        prompt, extra = extra, None  # input/output
    if prompt is not None and answer is not None:
        return Shape(
            "prompt_response",
            answer,
            prompt,
            extra if extra not in (prompt, answer) else None,
            _find(columns, ("system",)),
        )
    text = _find(columns, TEXT_NAMES)
    if text is None and len(columns) == 1:
        text = columns[0]
    if text is not None:
        return Shape("text", text)
    return None


def shape_or_error(columns: list[str], label: str = "The data") -> Shape:
    found = detect_shape(columns)
    if found is None:
        shown = ", ".join(f"'{c}'" for c in columns[:8])
        raise DatasetError(
            f"{label} is not language-model examples: it needs prompt and response columns (or instruction "
            f"and output), a 'messages' column of chats, or one 'text' column; its columns are {shown}."
        )
    return found


def _cell_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def parse_messages(value: Any, row: int) -> list[dict[str, str]]:
    """A chat cell as a list of ``{"role", "content"}``; :class:`DatasetError` naming the row when it is not."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise DatasetError(
                f"Row {row + 1}'s messages are not a JSON list of role/content messages."
            ) from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise DatasetError(f"Row {row + 1}'s messages are not a list of role/content messages.")
    out = []
    for message in value:
        if not isinstance(message, dict):
            raise DatasetError(f"Row {row + 1} holds a message that is not a role/content pair.")
        role = str(message.get("role", message.get("from", ""))).strip().lower()
        role = ROLE_ALIASES.get(role, role)
        content = message.get("content", message.get("value"))
        if role not in ROLES or content is None:
            raise DatasetError(
                f"Row {row + 1} holds a message without a role (system, user or assistant) and a content."
            )
        out.append({"role": role, "content": str(content)})
    return out


@dataclass
class Example:
    """One example: the conversation before the answer, and the answer (``text`` data: no messages)."""

    messages: list[dict[str, str]]
    answer: str


def examples(table: pd.DataFrame, shape: Shape) -> list[Example]:
    """Every row as an :class:`Example` (empty answers stay, empty; see :func:`data_report`)."""
    out: list[Example] = []
    if shape.kind == "text":
        return [Example([], _cell_text(v)) for v in table[shape.answer].tolist()]
    if shape.kind == "chat":
        for i, value in enumerate(table[shape.answer].tolist()):
            messages = parse_messages(value, i)
            last = max((j for j, m in enumerate(messages) if m["role"] == "assistant"), default=None)
            if last is None:
                out.append(Example(messages, ""))
            else:
                out.append(Example(messages[:last], messages[last]["content"].strip()))
        return out
    prompts = table[shape.prompt].tolist()
    answers = table[shape.answer].tolist()
    extras = table[shape.extra_input].tolist() if shape.extra_input else [None] * len(table)
    systems = table[shape.system].tolist() if shape.system else [None] * len(table)
    for prompt, answer, extra, system in zip(prompts, answers, extras, systems, strict=True):
        text = _cell_text(prompt)
        if _cell_text(extra):
            text = f"{text}\n\n{_cell_text(extra)}"
        messages = [{"role": "system", "content": _cell_text(system)}] if _cell_text(system) else []
        out.append(Example([*messages, {"role": "user", "content": text}], _cell_text(answer)))
    return out


# --------------------------------------------------------------------------- reading JSONL
def looks_like_jsonl(data: bytes, filename: str | None) -> bool:
    """A ``.jsonl``/``.json`` file, or one whose first character is ``{`` or ``[``."""
    name = (filename or "").lower()
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return True
    if name.endswith((".csv", ".tsv", ".txt")):
        return False
    return data.lstrip()[:1] in (b"{", b"[")


def read_jsonl(data: bytes, label: str) -> pd.DataFrame:
    """The examples of a JSONL file (one JSON object a line) or a JSON list of objects, as a table whose
    list cells (chat messages) are JSON text; one plain sentence naming the first bad line otherwise."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"'{label}' is not UTF-8 text, so it cannot be read as JSON lines.") from None
    rows: list[Any]
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(stripped)
        except ValueError as err:
            raise DatasetError(f"'{label}' is not valid JSON ({err.msg} at line {err.lineno}).") from None
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as err:
                raise DatasetError(
                    f"Line {number} of '{label}' is not JSON ({err.msg}); every line of a JSONL file must be "
                    "one JSON object."
                ) from None
    if not rows:
        raise DatasetError(f"'{label}' holds no examples.")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise DatasetError(f"Example {number} of '{label}' is not a JSON object (with named fields).")
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, (list, dict))).any():
            frame[column] = frame[column].map(
                lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
            )
    return frame


# --------------------------------------------------------------------------- checks and profile
def check_examples(found: list[Example], shape: Shape) -> None:
    """One plain sentence when the data cannot train: no examples, or every answer empty."""
    if not found:
        raise DatasetError("The data set holds no examples.")
    if not any(e.answer for e in found):
        what = "text" if shape.kind == "text" else "answer"
        raise DatasetError(
            f"The {what} column '{shape.answer}' is empty in every row, so there is nothing to learn; fill it in "
            "and add the file again."
        )


def data_report(
    table: pd.DataFrame, count_tokens: Any = None, max_length: int | None = None
) -> dict[str, Any]:
    """What the Data page shows: the shape, examples, duplicates, empty answers and (with ``count_tokens``,
    a function from an :class:`Example` to its token count) the token counts and the examples that a
    ``max_length`` cuts."""
    shape = shape_or_error(list(table.columns))
    found = examples(table, shape)
    keys = [json.dumps([e.messages, e.answer], ensure_ascii=False) for e in found]
    report: dict[str, Any] = {
        "shape": shape.kind,
        "description": shape.describe(),
        "examples": len(found),
        "empty_answers": sum(1 for e in found if not e.answer),
        "duplicates": len(keys) - len(set(keys)),
    }
    if count_tokens is not None:
        counts = [int(count_tokens(e)) for e in found]
        report["tokens"] = counts
        report["longest"] = max(counts, default=0)
        report["longest_example"] = int(max(range(len(counts)), key=counts.__getitem__)) if counts else None
        if max_length:
            report["max_length"] = int(max_length)
            report["cut"] = sum(1 for c in counts if c > max_length)
    return report


def _words(texts: list[str], bins: int = 20) -> dict[str, Any]:
    """Words per text: median, 90th percentile, longest and a histogram (as the text columns' profile)."""
    import numpy as np

    counts = np.array([len(t.split()) for t in texts] or [0], dtype="int64")
    edges = np.unique(np.linspace(0, max(int(counts.max()), 1) + 1, bins + 1).round().astype("int64"))
    hist, _ = np.histogram(counts, bins=edges)
    return {
        "words_median": float(np.median(counts)),
        "words_p90": int(np.percentile(counts, 90, method="lower")),
        "words_max": int(counts.max()),
        "length_histogram": {"edges": edges.tolist(), "counts": hist.tolist()},
    }


def reading(table: pd.DataFrame, profile: dict[str, Any], *, examples_file: bool) -> dict[str, Any] | None:
    """The table read as language-model examples, for its profile (``profile['llm']``), or ``None`` when
    it is a table to learn a column of: chats always count, prompt/response pairs when they came as JSONL
    (``examples_file``) or their prompt or answer column holds free text, plain text when it is the
    table's only column. Words, not tokens: the tokens depend on the model (the Train page counts them)."""
    columns = list(table.columns)
    shape = detect_shape(columns)
    if shape is None or (shape.kind == "text" and len(columns) != 1):
        return None
    kinds = {c["name"]: c["kind"] for c in profile.get("columns", [])}
    free_text = "text" in (kinds.get(shape.prompt), kinds.get(shape.answer))
    if shape.kind == "prompt_response" and not examples_file and not free_text:
        return None  # e.g. a survey's question and answer categories: a table
    out: dict[str, Any] = {
        "shape": shape.kind,
        "description": shape.describe(),
        "prompt": shape.prompt,
        "answer": shape.answer,
        "extra_input": shape.extra_input,
        "system": shape.system,
    }
    try:
        found = examples(table, shape)
        out.update(data_report(table))
    except DatasetError as err:
        out["problem"] = str(err)
        return out
    if shape.kind == "chat":
        turns = [sum(m["role"] == "assistant" for m in e.messages) + bool(e.answer) for e in found]
        out["answers_per_chat"] = {"most": max(turns, default=0), "several": sum(t > 1 for t in turns)}
    if shape.kind != "text":
        out["prompt_words"] = _words([" ".join(m["content"] for m in e.messages) for e in found])
    out["answer_words"] = _words([e.answer for e in found])
    return out


def fields_in_words(reading: dict[str, Any]) -> tuple[str, str]:
    """Which fields of a :func:`reading` hold the prompt and the answer, in words."""
    if reading["shape"] == "chat":
        return f"the messages in '{reading['answer']}' before each answer", "the assistant's messages"
    if reading["shape"] == "text":
        return "none (plain text)", f"'{reading['answer']}' (all of it)"
    prompt = f"'{reading['prompt']}'" + (f" plus '{reading['extra_input']}'" if reading.get("extra_input") else "")
    if reading.get("system"):
        prompt += f" (system message: '{reading['system']}')"
    return prompt, f"'{reading['answer']}'"


def _verb(n: int, verb: str) -> str:
    return verb + "s" if n == 1 else verb


def examples_notes(reading: dict[str, Any]) -> list[dict[str, str]]:
    """What the studio noticed in a :func:`reading`, each with what it does about it."""
    from studio.core.text import counted

    notes = []
    if reading["duplicates"]:
        notes.append(
            {
                "message": f"{counted(reading['duplicates'], 'example')} {_verb(reading['duplicates'], 'repeat')} an earlier "
                "one exactly.",
                "action": "They are kept: the model sees them more often.",
            }
        )
    if reading["empty_answers"]:
        notes.append(
            {
                "message": f"{counted(reading['empty_answers'], 'example')} "
                f"{'has' if reading['empty_answers'] == 1 else 'have'} an empty answer.",
                "action": "They are left out of training.",
            }
        )
    several = reading.get("answers_per_chat", {}).get("several", 0)
    if several:
        notes.append(
            {
                "message": f"{counted(several, 'chat')} {_verb(several, 'hold')} several assistant answers.",
                "action": "Every assistant answer of a chat is learnt; the user's messages are not.",
            }
        )
    return notes

