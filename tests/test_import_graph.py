"""The layers stay layers: no import cycles between the studio's modules or between its packages
(imports inside functions included: a cycle moved into a function still fails, later, in a user's
hands), no package importing a layer above it (DESIGN.md's "Layout" table), the engine never reaches
for page helpers, and what the pages import at start stays free of torch, Lightning and MLflow (so the
studio opens at once)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
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


# --------------------------------------------------------------------------- packages and layers
def package(module: str) -> str:
    """The layer a module belongs to: ``studio.jobs.executors.ray`` -> ``studio.jobs``. The ``studio``
    package itself holds only its version (any layer may read it); ``python -m studio`` is the CLI."""
    if module.startswith("lightning_modules"):
        return "lightning_modules"
    if module == "studio":
        return "studio.core"
    if module == "studio.__main__":
        return "studio.cli"
    if module.startswith("studio.modalities.") and module.endswith(".views"):
        return "studio.app"  # a kind's page parts: its own package, the page helpers' layer
    return ".".join(module.split(".")[:2])


TOP = ("studio.app", "studio.cli", "studio.server")
"""Page helpers, the CLI and the servers: they may import every layer below (and one another)."""
MAY_IMPORT = {
    "studio.core": set(),
    "lightning_modules": {"studio.core"},
    "studio.bundle": {"studio.core"},
    "studio.tracking": {"studio.core"},  # (one row with the bundle)
    "studio.modalities": {"lightning_modules", "studio.bundle", "studio.tracking", "studio.core"},
    "studio.data": {"studio.modalities", "studio.core"},
    # the engine loads the data set it trains on and hands its table to the kind's ``prepare``
    "studio.engine": {"studio.modalities", "studio.data", "studio.tracking", "studio.bundle", "studio.core"},
    "studio.jobs": {"studio.engine", "studio.data", "studio.core"},
    "studio.search": {"studio.jobs", "studio.engine", "studio.core"},
}
"""What each layer may import directly (DESIGN.md's "Layout" table); it may also import what those may
import, and so on down."""


def _below(layer: str) -> set[str]:
    if layer in TOP:
        return set(MAY_IMPORT) | set(TOP)
    found: set[str] = set()
    todo = list(MAY_IMPORT[layer])
    while todo:
        other = todo.pop()
        if other not in found:
            found.add(other)
            todo.extend(MAY_IMPORT[other])
    return found


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, used in graph.items():
        packages.setdefault(package(module), set()).update(
            package(other) for other in used if package(other) != package(module)
        )
    return packages


def _layer_violations(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """``module -> [module it should not import]`` for imports of a layer that is not below."""
    wrong = {}
    for module, used in graph.items():
        layer = package(module)
        above = sorted(o for o in used if package(o) != layer and package(o) not in _below(layer))
        if above:
            wrong[module] = above
    return wrong


def test_every_module_is_in_a_known_layer() -> None:
    assert {package(m) for m in MODULES} - set(MAY_IMPORT) - set(TOP) == set()


def test_no_import_cycles_between_packages() -> None:
    """E.g. the data set store and the job store each importing the other (inside a function) is a cycle
    between ``studio.data`` and ``studio.jobs``, though no two modules form one."""
    assert _cycles(_package_graph(GRAPH)) == []


def test_no_package_imports_a_layer_above_it() -> None:
    assert _layer_violations(GRAPH) == {}


def test_the_package_checks_find_a_cycle_hidden_in_a_function_and_a_layer_reached_upwards() -> None:
    """What the two checks above are for: an image kind's ingest that imports the data set store (the
    cycle that broke ``studio predict model.zip pictures.zip``), and a job store that imports a search."""
    source = "def f():\n    from studio.data.store import get_dataset\n"
    hidden = {m for m in _imports_of(source) if m in MODULES}
    graph = {**GRAPH, "studio.modalities.image.ingest": GRAPH["studio.modalities.image.ingest"] | hidden}
    assert ["studio.data", "studio.modalities"] in _cycles(_package_graph(graph))
    assert _layer_violations(graph) == {"studio.modalities.image.ingest": ["studio.data.store"]}
    upwards = {**GRAPH, "studio.jobs.store": GRAPH["studio.jobs.store"] | {"studio.search.records"}}
    assert _layer_violations(upwards) == {"studio.jobs.store": ["studio.search.records"]}


def _imports_of(source: str) -> set[str]:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    try:
        return imports(Path(f.name))
    finally:
        Path(f.name).unlink()


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


# --------------------------------------------------------------------------- kinds stay in their packages
HEAD_TASKS = {"classification", "regression"}
"""Also what a network's output is (``head_task``): the shipped runtime compares its target with them."""
ALLOWED_KIND_NAMES = {
    (
        "pages/data.py",
        'column["kind"] == "text"',
    ): "a table profile column's kind (free text), not a data kind",
    (
        "studio/app/ui.py",
        'column["kind"] == "text"',
    ): "a table profile column's kind (free text), not a data kind",
    (
        "studio/data/images.py",
        "kind=KIND_IMAGES",
    ): "the store's picture half: it stores what the image kind's ingest unpacked as that kind's data",
}


def _kind_and_task_names() -> set[str]:
    """The kinds' names, the stored data sets' kinds (``images``) and the tasks' names."""
    from studio.core.tasks import all_tasks

    tasks = all_tasks()
    return (
        {info.kind for info in tasks.values()}
        | {info.data_kind for info in tasks.values()}
        | (set(tasks) - HEAD_TASKS)
    )


def _names_in(node: ast.AST, names: set[str]) -> list[str]:
    """The kind or task names ``node`` holds: a string, a constant named after one (``KIND_IMAGES``,
    ``TEXT_TASKS``), or a tuple/list/set of them."""
    items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    found = [item.value for item in items if isinstance(item, ast.Constant) and item.value in names]
    for item in items:
        name = item.id if isinstance(item, ast.Name) else item.attr if isinstance(item, ast.Attribute) else ""
        if name.isupper() and any(word.lower() in names for word in name.split("_")):
            found.append(name)
    return found


def kind_branches(source: str, names: set[str]) -> list[str]:
    """Where code compares a data kind's or task's name with something about a kind or task (``kind ==
    "image"``, ``info["kind"] == KIND_IMAGES``, ``spec.task in TEXT_TASKS``), holds a table keyed by them
    (``{KIND_IMAGE: …, KIND_TABULAR: …}``) or a list of them (``("text_classification", "text_regression")``),
    names them as what something is for (``tasks=("image_classification",)``), or hands one to a call
    (``by_data.pop("tabular", [])``): the source of each such expression."""
    tree = ast.parse(source)
    found = []
    # a comparison's sides and a table's keys are found with it (ast.walk visits parents first)
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_names_in(side, names) for side in sides) and any(
                "kind" in text or "task" in text
                for side in sides
                if not _names_in(side, names) and (text := ast.get_source_segment(source, side) or "")
            ):
                found.append(ast.get_source_segment(source, node))
        elif isinstance(node, ast.Dict):
            keys = [name for key in node.keys if key is not None for name in _names_in(key, names)]
            if len(keys) >= 2:
                found.append(" ".join(ast.get_source_segment(source, node).split()))
        elif id(node) not in inside and _lists_or_hands_on_a_name(node, names):
            found.append(" ".join(ast.get_source_segment(source, node).split()))
        if isinstance(node, ast.Compare | ast.Dict):
            inside.update(id(part) for part in ast.iter_child_nodes(node))
    return found


def _lists_or_hands_on_a_name(node: ast.AST, names: set[str]) -> bool:
    """A tuple/list/set of kind or task names only, a ``task…=``/``kind…=`` argument holding one, or a
    call handed one."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return 2 <= len(node.elts) == len(_names_in(node, names))
    if isinstance(node, ast.keyword):
        return bool(node.arg and ("kind" in node.arg or "task" in node.arg) and _names_in(node.value, names))
    if isinstance(node, ast.Call):
        return any(isinstance(arg, ast.Constant) and arg.value in names for arg in node.args)
    return False


def kind_registry_imports(path: Path) -> list[str]:
    """The kinds' registrations (``studio.modalities.<kind>.registry``) a file imports, at any level: a
    kind's registration is reached through ``studio.core.tasks.load_plugins`` alone, so what it registers
    (CLI defaults, readings of a table) is asked of the registry, not imported by name."""
    return sorted(m for m in imports(path) if m.startswith("studio.modalities.") and m.endswith(".registry"))


def _generic_files() -> list[Path]:
    """The studio's Python outside the kinds' own packages (``studio/modalities/<kind>/``,
    ``lightning_modules/<kind>/``), with the pages."""
    files = [*MODULES.values(), ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]

    def own(path: Path) -> bool:
        parts = path.relative_to(ROOT).parts
        return (
            parts[:2] == ("studio", "modalities")
            and len(parts) > 3
            or parts[0] == "lightning_modules"
            and len(parts) > 2
        )

    return [path for path in files if not own(path)]


def test_no_module_outside_a_kind_s_package_branches_on_a_kind_s_name() -> None:
    """A new kind is its packages plus its registration: nothing generic asks "is this a picture model?"
    (issue 19). The kinds' names are the registered ones (built in, and any plugin loaded)."""
    names = _kind_and_task_names()
    assert {"tabular", "image", "text", "llm", "image_classification"} <= names
    wrong = {}
    for path in _generic_files():
        relative = path.relative_to(ROOT).as_posix()
        found = [b for b in kind_branches(path.read_text(), names) if (relative, b) not in ALLOWED_KIND_NAMES]
        found += kind_registry_imports(path)
        if found:
            wrong[relative] = found
    assert wrong == {}


def test_the_kind_check_finds_branches_on_a_kind_and_tables_keyed_by_kind() -> None:
    """What the check above is for: the bundle reader's old picture branch, a table keyed by kind
    constants, a task compared by name; and what it leaves alone (a spec section, the head task)."""
    names = _kind_and_task_names()
    branches = textwrap.dedent(
        """
        if info["kind"] == KIND_IMAGE:
            pass
        if self.kind != "image":
            pass
        words = {KIND_IMAGE: 1, KIND_TABULAR: 2}
        texts = spec.task in ("text_classification", "text_regression")
        """
    )
    assert kind_branches(branches, names) == [
        'info["kind"] == KIND_IMAGE',
        'self.kind != "image"',
        "{KIND_IMAGE: 1, KIND_TABULAR: 2}",
        'spec.task in ("text_classification", "text_regression")',
    ]
    alone = 'shown = [f for f in fields if f.section != "image"]\nhead = target["task"] == "classification"\n'
    assert kind_branches(alone, names) == []


def test_the_kind_check_finds_what_the_seam_moved_out_of_the_spec_the_forms_and_the_cli(
    tmp_path: Path,
) -> None:
    """The patterns issue 19's last pass removed, as they were written: a stored data set's kind compared
    with ``KIND_IMAGES`` (``ui.py``, ``datasets add``), the spec's ``TEXT_TASKS`` (its tuple and its
    checks), catalogue entries naming their task, a kind's name handed to a call (``by_data.pop``,
    ``profile.get("llm")``), and the CLI importing the language-model kind's registry. Run on the parent
    commit (66bfeca), the check above finds 16 such places in 6 files (``core/spec.py`` 8, ``cli/main.py``
    3, ``data/images.py`` 2, ``app/forms.py``, ``app/ui.py`` and ``cli/spec.py`` 1 each), where the check
    as it was then found none."""
    names = _kind_and_task_names()
    old = textwrap.dedent(
        """
        TEXT_TASKS = ("text_classification", "text_regression")
        if info.kind == KIND_IMAGES:
            pass
        if self.data.use_all_data and self.task in TEXT_TASKS and pretrained:
            pass
        entry = ArchitectureInfo(name="small_cnn", tasks=("image_classification",))
        other = ArchitectureInfo(name="bag_of_words", tasks=TEXT_TASKS)
        first = by_data.pop("tabular", [])
        """
    )
    assert kind_branches(old, names) == [
        '("text_classification", "text_regression")',
        "info.kind == KIND_IMAGES",
        'by_data.pop("tabular", [])',
        "self.task in TEXT_TASKS",
        'tasks=("image_classification",)',
        "tasks=TEXT_TASKS",
    ]
    cli = tmp_path / "spec.py"
    cli.write_text("def spec_from_args():\n    from studio.modalities.llm.registry import cli_defaults\n")
    assert kind_registry_imports(cli) == ["studio.modalities.llm.registry"]
    alone = "for fill in cli_defaults():\n    pass\nif not data_kind(info.kind).columns:\n    pass\n"
    assert kind_branches(alone, names) == []
