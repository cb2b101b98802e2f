"""What each task is, in one table: which data kind trains it, on which stored data, with which words.

A *task* is what the run spec's ``task`` field names (``classification``, ``regression``,
``image_classification``, ``text_classification``, ``text_regression``); a *data kind* (``tabular``,
``image``, ``text``) is the package under
``studio/modalities/`` that trains it. Everything the spec, the pages and the CLI need to know about a
task without importing a data kind's code (torch, Lightning) is a :class:`TaskInfo` here: the spec
validates against it, the Train form picks its choices from it, the pages take their words from it.

Adding a data kind registers its tasks with :func:`register_task` (and its networks in the catalogue,
:func:`studio.core.spec.register_architecture`) and its :class:`~studio.modalities.base.Modality` with
:func:`studio.modalities.register`. Kinds that do not ship with the studio are modules named in
``STUDIO_MODALITIES`` (comma-separated import paths); they are imported the first time a task is looked
up, in every process (pages, CLI, workers), so a job of such a kind runs wherever the studio runs.
"""

from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any, NamedTuple

PLUGINS_ENV = "STUDIO_MODALITIES"
BUILTIN_PLUGINS = (
    "studio.modalities.tabular.registry",
    "studio.modalities.image.registry",
    "studio.modalities.text.registry",
    "studio.modalities.llm.registry",
)
"""The kinds that ship with the studio: each registers its tasks (and its bundles' flavour) from its own
package as a plugin does, in this order (the order of the tasks on the Train form and in messages)."""


class DataKind(NamedTuple):
    """How the pages, the CLI and the messages speak of the stored data sets of one kind
    (``DatasetInfo.kind``), in the kind's own words (:func:`register_data_kind`)."""

    is_: str
    """What a data set of it is, for the sentence that refuses a task on the wrong data: "is a table"."""
    needed: str
    """What a task trained on it needs: "a table (a CSV file)"."""
    word: str = "table"
    """The Data page's "Kind" column: "table", "pictures"."""
    unit: str = "row"
    """What one of its stored rows is, in the singular: "row", "picture"."""
    columns: bool = True
    """Its data are a table whose columns the user sees and picks (rather than a folder of files)."""


DATA_KINDS: dict[str, DataKind] = {}
"""Stored data set kind (``DatasetInfo.kind``) -> its words; each kind registers its own
(:func:`register_data_kind`)."""


def register_data_kind(
    name: str, is_: str, needed: str, *, word: str = "table", unit: str = "row", columns: bool = True
) -> None:
    """Words for stored data sets of kind ``name``: "is a table", "a table (a CSV file)", and how the
    data list names one (``word``), what one stored row is (``unit``) and whether it has columns."""
    DATA_KINDS[name] = DataKind(is_, needed, word, unit, columns)


def data_kind(name: str) -> DataKind:
    """The registered words for stored data sets of kind ``name`` (plain words made up for an unknown one)."""
    load_plugins()
    return DATA_KINDS.get(name) or DataKind(f"holds {name} data", name, name)


@dataclass(frozen=True)
class TaskInfo:
    name: str
    """The spec's ``task`` value."""
    kind: str
    """The data kind that trains it: a key of ``studio.modalities.MODALITIES``, and the bundle's kind."""
    title: str
    """For people: "Image classification"."""
    classes: bool
    """Predicts a category (accuracy, F1, AUROC) rather than a number (MAE, RMSE, R²)."""
    data_kind: str
    """The stored data sets it trains on (``tabular`` or ``images``, as ``DatasetInfo.kind``)."""
    default_architecture: str
    """The catalogue network a new spec of this task starts with."""
    unit: str = "rows"
    """What one example is called on the pages ("rows", "pictures")."""
    unused_section: str = "image"
    """The spec section that does not apply (left out of the form, the run page and MLflow params)."""
    uses_feature_columns: bool = True
    """Its inputs are columns of a table that the user may pick."""
    fixed_target: str | None = None
    """The target is always this (pictures: the folder name, ``label``) rather than a chosen column."""
    learns: str | None = None
    """What a model of it does, for captions ("tells which class a picture shows"); ``None``: it
    predicts the target column."""
    spec_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Defaults of its own for spec sections (pictures: mixed bfloat16 precision on GPUs)."""
    metrics: tuple[str, ...] = ()
    """The validation metrics its runs record, the one the pages show first (and compare by) second,
    after ``val/loss``; empty: classification's or regression's."""
    choice: str | None = None
    """How the Train form's list of tasks names it ("Regression (predict a number)"); ``None``: its title."""


_TASKS: dict[str, TaskInfo] = {}
_lock = threading.RLock()  # a registry that reads the catalogue while it loads
_plugins_loaded: set[str] = set()


_PROFILE_READERS: list[Any] = []


class Reading(NamedTuple):
    """How the pages and the CLI show a data set whose profile holds a kind's reading of it."""

    word: str
    """What the data list calls it ("language-model examples")."""
    describe: Any = None
    """``describe(reading, dataset_id) -> list[str]``: the lines ``datasets add`` and ``datasets show``
    print for it instead of its columns."""
    views: str | None = None
    """The module (the page helpers' layer) with its Data-page parts: ``data_section(info, table,
    profile) -> bool`` (whether it showed the data set its own way) and ``picked_words(profile)`` (what
    the Train page has already picked for it, or ``None``)."""


_READINGS: dict[str, Reading] = {}
_CLI_DEFAULTS: list[Any] = []


def register_profile_reader(
    reader: Any,
    *,
    key: str | None = None,
    word: str | None = None,
    describe: Any = None,
    views: str | None = None,
) -> None:
    """A kind's own reading of a table being added, ``reader(table, profile, examples_file=...)``: it may
    add to the profile (language-model examples: their shape, the suggested target and task). Called by
    the data store after the table's profile, in registration order. ``key``: the profile entry its
    reading fills; ``word``, ``describe`` and ``views``: how a data set whose profile has that entry is
    shown (:class:`Reading`)."""
    if reader not in _PROFILE_READERS:
        _PROFILE_READERS.append(reader)
    if key and word:
        _READINGS[key] = Reading(word, describe, views)


def profile_readers() -> list[Any]:
    """The registered kinds' readings of a table being added (:func:`register_profile_reader`)."""
    load_plugins()
    return list(_PROFILE_READERS)


def readings() -> list[Reading]:
    """How each registered reading of a table is shown (:func:`register_profile_reader`)."""
    load_plugins()
    return list(_READINGS.values())


def described_reading(profile: dict[str, Any], dataset_id: str) -> list[str] | None:
    """The lines a kind's reading that ``profile`` holds says of its data set (``None``: none holds one,
    or its kind says nothing)."""
    load_plugins()
    for key, reading in _READINGS.items():
        if profile.get(key) and reading.describe is not None:
            return list(reading.describe(profile[key], dataset_id))
    return None


def data_word(kind: str, profile: dict[str, Any] | None = None) -> str:
    """What the data list calls a stored data set ("table", "pictures", "language-model examples"): the
    word of a kind's reading its profile holds, else its data kind's."""
    load_plugins()
    for key, reading in _READINGS.items():
        if (profile or {}).get(key):
            return reading.word
    return data_kind(kind).word


def register_cli_defaults(fill: Any) -> None:
    """A kind's defaults for a spec built by the CLI, ``fill(data, base_model, profile) -> bool``: it may
    fill the spec dict ``data`` from the named base model (``--base-model``, or ``--arch`` naming a folder
    or Hub id) and the data set's profile, and says whether it did (the first that does wins)."""
    if fill not in _CLI_DEFAULTS:
        _CLI_DEFAULTS.append(fill)


def cli_defaults() -> list[Any]:
    """The registered kinds' CLI defaults (:func:`register_cli_defaults`), in registration order."""
    load_plugins()
    return list(_CLI_DEFAULTS)


def register_task(info: TaskInfo) -> TaskInfo:
    """Make ``info.name`` a valid task everywhere (spec, form, CLI). Registering it again replaces it."""
    _TASKS[info.name] = info
    return info


def load_plugins() -> None:
    """Import the modules named in ``STUDIO_MODALITIES`` (once each): they register their data kinds."""
    names = [*BUILTIN_PLUGINS, *(n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip())]
    with _lock:
        for name in names:
            if name in _plugins_loaded:
                continue
            _plugins_loaded.add(name)
            importlib.import_module(name)


def _plugin_rank(info: TaskInfo) -> int:
    """Where a task's kind comes in ``BUILTIN_PLUGINS`` (a plugin's kind after them): the tasks keep that
    order whichever registry a process happened to import first."""
    module = f"studio.modalities.{info.kind}.registry"
    return BUILTIN_PLUGINS.index(module) if module in BUILTIN_PLUGINS else len(BUILTIN_PLUGINS)


def all_tasks() -> dict[str, TaskInfo]:
    """Every registered task: the built-in kinds' in ``BUILTIN_PLUGINS`` order, then plugins' (each kind's
    in the order it registers them)."""
    load_plugins()
    return {info.name: info for info in sorted(_TASKS.values(), key=_plugin_rank)}


def is_task(task: Any) -> bool:
    return isinstance(task, str) and task in all_tasks()


def task_info(task: str) -> TaskInfo:
    """The task's description; ``KeyError`` naming the known tasks when there is none."""
    tasks = all_tasks()
    if task not in tasks:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(tasks)}")
    return tasks[task]


def tasks_for(data_kind: str) -> list[str]:
    """The tasks a stored data set of this kind can train, in registration order."""
    return [name for name, info in all_tasks().items() if info.data_kind == data_kind]


def head_task(task: str) -> str:
    """What the network's output is: ``classification`` (one logit per class) or ``regression`` (one
    number), whatever the data kind (``text_classification`` has a classification head)."""
    return "classification" if task_info(task).classes else "regression"


def class_tasks() -> list[str]:
    return [name for name, info in all_tasks().items() if info.classes]
