"""User text (names, columns, cells, reasons) escaped for where it is shown, so it reads as typed.

Streamlit renders Markdown in ``st.markdown``, captions, alerts, titles, metric values and widget labels;
Plotly reads a little HTML in titles, labels and hover text. Everything a user typed or uploaded goes
through :func:`as_text` or :func:`as_plot_text` before it reaches one of them; the studio's own words
(bold around a value) stay Markdown. Plain Python, no Streamlit, so every view module can use it.
"""

from __future__ import annotations

import html
import re
from typing import Any

__all__ = ["WORD_JOINER", "as_plot_text", "as_text"]

# ``_`` between two letters or digits (``Miles_per_Gallon``) never starts emphasis, so it stays as typed.
_MARKDOWN_SIGNS = re.compile(r"([\\`*\[\]<>#|~$&]|(?<![^\W_])_|_(?![^\W_]))")
# Icons and emoji (``:material/home:``, ``:smile:``) and bare addresses (``http://…``, ``www.…``,
# ``a@b.org``) are found in the text after Markdown escapes are read, so a backslash does not stop them:
# an invisible word joiner after the colon, the ``www`` or the ``@`` does.
_LINK_OR_ICON = re.compile(r"(:(?=[\w/+-])|(?<![\w.])www(?=\.)|@)", re.IGNORECASE)
WORD_JOINER = "\u2060"
_LIST_START = re.compile(r"^(\s*)([-+]|\d+\.)(?=\s)", re.MULTILINE)


def as_text(text: Any) -> str:
    """``text`` escaped for Streamlit's Markdown (``st.markdown``, ``st.caption``, ``st.error``, titles,
    widget labels …), so a name, a column or a cell such as ``*price*``, ``[x](y)``, ``![x](url)``,
    ``<img …>``, ``$x$``, ``:red[x]`` or ``&amp;`` is shown as typed, never as formatting, a link, a
    fetched picture, a formula, an icon or a link. Only what users typed goes through it, never the studio's
    words. The text shown is the same; only invisible word joiners are added (see ``WORD_JOINER``)."""
    escaped = _LINK_OR_ICON.sub(r"\1" + WORD_JOINER, _MARKDOWN_SIGNS.sub(r"\\\1", str(text)))
    return _LIST_START.sub(
        lambda m: m.group(1) + (m.group(2)[:-1] + "\\." if m.group(2).endswith(".") else "\\" + m.group(2)),
        escaped,
    )


def as_plot_text(text: Any) -> str:
    """``text`` escaped for Plotly's titles, axis and legend labels and hover text, which read a little
    HTML (``<b>``, ``<a href>``, ``<br>``): ``<``, ``>`` and ``&`` become entities, shown as typed."""
    return html.escape(str(text), quote=False)


def counted(n: int, word: str, plural: str | None = None) -> str:
    """``1 run``, ``2 runs``, ``1,234 rows``: a count with its noun in the right number (``plural`` for
    nouns that do not just add an s: ``counted(1, "class", "classes")``)."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"
