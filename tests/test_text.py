"""User text is escaped for Markdown (Streamlit) and for Plotly's bit of HTML, and shown as typed."""

from __future__ import annotations

import re

import pytest

from studio.app import charts
from studio.core.text import WORD_JOINER, as_plot_text, as_text

HOSTILE = [
    "![x](http://127.0.0.1:9/x)",
    "<img src=x onerror=alert(1)>",
    "[l](javascript:alert(1))",
    "**b**",
    "$x$",
    ":red[x] :material/home: :smile:",
    "a &amp; b",
    "_under_ `code` ~~gone~~ | cell #1",
    "see www.example.com, http://127.0.0.1:9/y or me@example.org",
]

# A Markdown sign still active after escaping: one not preceded by an odd number of backslashes.
_ACTIVE = re.compile(r"(?<!\\)(?:\\\\)*([*_\[\]<>`$~&|#]|:(?=[\w/+-])|www\.|@(?!\u2060))")


def unescape(markdown: str) -> str:
    """What CommonMark shows for a text made only of characters and backslash escapes."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace(WORD_JOINER, "")


@pytest.mark.parametrize("text", HOSTILE)
def test_as_text_leaves_no_markdown_sign_active_and_reads_as_typed(text: str) -> None:
    escaped = as_text(text)
    assert not _ACTIVE.search(escaped), escaped
    assert unescape(escaped) == text


def test_as_text_keeps_list_and_heading_starts_literal() -> None:
    assert as_text("1. first") == "1\\. first"
    assert as_text("- item") == "\\- item"
    assert as_text("# title") == "\\# title"
    assert as_text("plain words: 3.5 kg") == "plain words: 3.5 kg"  # ordinary text is left alone


@pytest.mark.parametrize("text", HOSTILE)
def test_as_plot_text_leaves_no_tag_or_entity(text: str) -> None:
    escaped = as_plot_text(text)
    assert "<" not in escaped and ">" not in escaped
    assert not re.search(r"&(?!lt;|gt;|amp;)", escaped)


def test_charts_show_class_and_run_names_as_text() -> None:
    names = ["<b>bold</b>", '<a href="javascript:alert(1)">x</a>']
    bars = charts.class_counts_figure(names, [3, 4])
    assert list(bars.data[0].y) == [
        "&lt;b&gt;bold&lt;/b&gt;",
        '&lt;a href="javascript:alert(1)"&gt;x&lt;/a&gt;',
    ]
    matrix = charts.confusion_matrix_figure(names, [[1, 1], [0, 2]])
    assert "<b>" not in str(list(matrix.data[0].x)) + str(matrix.data[0].customdata)
    curves = charts.compare_curves({"<br>run": {"val/loss": [(0, 1.0), (1, 0.5)]}}, "val/loss")
    assert curves.data[0].name == "&lt;br&gt;run"
    assert "<br>run" not in curves.data[0].hovertemplate


def test_as_text_leaves_underscores_inside_words_alone() -> None:
    assert as_text("Miles_per_Gallon") == "Miles_per_Gallon"  # never emphasis in Markdown
    assert as_text("_x_") == "\\_x\\_"


def test_as_text_stops_icons_emoji_and_bare_links_with_an_invisible_joiner() -> None:
    # Streamlit finds these in the text after escapes are read: a backslash would not stop them.
    assert as_text(":material/home:") == ":" + WORD_JOINER + "material/home:"
    assert as_text("http://x.org") == "http:" + WORD_JOINER + "//x.org"
    assert as_text("www.x.org") == "www" + WORD_JOINER + ".x.org"
    assert as_text("a@x.org") == "a@" + WORD_JOINER + "x.org"
    assert as_text("12: ok") == "12: ok"
