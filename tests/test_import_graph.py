"""The layers stay layers: no import cycles between the studio's modules (lazy imports included), the
engine never reaches for page helpers, and what the pages import at start stays free of torch,
Lightning and MLflow (so the studio opens at once)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE_HELPERS = {
    "studio.app.ui",
    "studio.app.forms",
    "studio.app.runs_view",
    "studio.app.images_view",
    "studio.app.charts",
}
ENGINE = {
    "studio.engine.training",
    "studio.tracking",
    "studio.bundle",
    "studio.core.runtime",
    "studio.jobs.worker",
}
HEAVY = ("torch", "lightning", "pytorch_lightning", "mlflow")


def _modules() -> dict[str, Path]:
    found = {}
    for package in ("studio", "lightning_modules"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _own(name: str) -> str | None:
    """The studio module ``name`` belongs to (``studio.jobs.store.Job`` -> ``studio.jobs.store``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The studio modules a file imports (``from package import module`` counts as the module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [
                f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES
            ]
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(node.module)
    return {own for name in found if (own := _own(name))} | {n for n in found if n.split(".")[0] in HEAVY}


GRAPH = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                group.append(other)
                if other == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {**GRAPH, "studio.core.settings": GRAPH["studio.core.settings"] | {"studio.cli"}}
    assert any("studio.core.settings" in group for group in _cycles(graph))


def test_the_engine_never_imports_page_helpers() -> None:
    engine = {m for m in MODULES if m in ENGINE or m.startswith(("studio.jobs", "lightning_modules"))}
    wrong = {m: sorted(GRAPH[m] & PAGE_HELPERS) for m in engine if GRAPH[m] & PAGE_HELPERS}
    assert wrong == {}


def test_lightning_modules_use_only_the_studio_s_core() -> None:
    """Lightning code depends on ``studio.core`` (spec, catalogue, errors, the runtime shipped in bundles)
    and nothing else of the studio: data kinds, jobs, tracking, pages and the CLI call it, not the reverse."""
    used = {m for name in MODULES if name.startswith("lightning_modules") for m in GRAPH[name]}
    assert {m for m in used if m.startswith("studio")} - {"studio.core"} <= {
        m for m in MODULES if m.startswith("studio.core.")
    }


def test_core_imports_nothing_else_of_the_studio() -> None:
    core = [m for m in MODULES if m == "studio.core" or m.startswith("studio.core.")]
    wrong = {m: sorted(o for o in GRAPH[m] if not o.startswith(("studio.core", *HEAVY))) for m in core}
    assert {m: o for m, o in wrong.items() if o} == {}


def test_the_page_helpers_never_import_the_engine() -> None:
    """``studio.app`` reads runs, bundles and data sets, and never reaches training or Lightning."""
    app = [m for m in MODULES if m.startswith("studio.app")]
    engine = ("studio.engine", "lightning_modules")
    wrong = {m: sorted(o for o in GRAPH[m] if o.startswith(engine)) for m in app}
    assert {m: o for m, o in wrong.items() if o} == {}


def test_what_the_pages_import_at_start_has_no_torch_lightning_or_mlflow() -> None:
    starts = set()
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        starts |= {m for m in imports(path, top_level_only=True) if m in MODULES}
        assert not {m for m in imports(path, top_level_only=True) if m.split(".")[0] in HEAVY}, path.name
    code = (
        f"import sys\nfor name in {sorted(starts)!r}:\n    __import__(name)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", (sorted(starts), out.stdout, out.stderr[-2000:])
