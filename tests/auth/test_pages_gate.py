"""Every page sends itself back through app.py's login gate before it does anything.

On a fresh server, Streamlit 1.67 runs the first request for a page's address (``/train``) as an
old-style multipage app: the page file alone, without app.py. ``ui.require_app()`` then reruns through
app.py, whose gate shows only the login form. So it must come before anything that shows or does
something: only the docstring, imports and plain constants may precede it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PAGES = sorted((Path(__file__).resolve().parents[2] / "pages").glob("*.py"))


def is_require_app(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and ast.unparse(node.value.func) == "ui.require_app"
        and not node.value.args
    )


def is_harmless(node: ast.stmt) -> bool:
    """A docstring, an import, or a name bound to a constant, a literal table or ``st.session_state``."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return True
    if isinstance(node, ast.Assign | ast.AnnAssign):
        value = node.value
        if value is None or ast.unparse(value) == "st.session_state":
            return True
        literal = (ast.Constant, ast.Dict, ast.Tuple, ast.List, ast.Set, ast.expr_context)
        return all(isinstance(n, literal) for n in ast.walk(value))
    return False


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_page_calls_require_app_before_anything_else(page: Path) -> None:
    body = ast.parse(page.read_text()).body
    first = next((i for i, node in enumerate(body) if is_require_app(node)), None)
    assert first is not None, f"{page.name} never calls ui.require_app()"
    before = [ast.unparse(node).splitlines()[0] for node in body[:first] if not is_harmless(node)]
    assert before == [], f"{page.name} runs code before ui.require_app(): {before}"
