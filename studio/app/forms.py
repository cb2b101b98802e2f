"""The Train page's form, built from the run spec, plus the checks and the time guess shown beside it.

Pure functions (no Streamlit, no torch): :func:`form_fields` walks the pydantic fields of
:class:`~studio.core.spec.RunSpec` and the chosen architecture's settings and describes one widget per
field (label = the field's ``title``, help = its ``description``, ``advanced`` from its UI hints).
:func:`check_values` turns the widget values back into a validated spec, or says in plain words which
values the spec does not allow. :func:`risky_values` and :func:`estimate_time` are the plain-language
advice.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from studio.core import system
from studio.core.spec import (
    ARCHITECTURES,
    PRESETS,
    RunSpec,
    StudioModel,
    get_dotted,
    metrics_for,
    set_dotted,
)
from studio.core.tasks import task_info
from studio.data import column_profile

Widget = Literal["checkbox", "select", "multiselect", "number", "text"]

# Chosen by the page with dedicated widgets (data set, target, task, architecture), or replaced by the
# chosen architecture's own settings (``architecture.params``).
PAGE_CHOSEN = frozenset(
    {"task", "data.dataset_id", "data.target", "architecture.name", "architecture.params"}
)
KEY_PREFIX = "train__"


@dataclass(frozen=True)
class FormField:
    """One widget of the Train form, described from one spec field."""

    path: str
    """Dotted spec path, e.g. ``training.epochs`` or ``architecture.params.width``."""
    key: str
    """The widget's Streamlit key (unique per field and architecture)."""
    widget: Widget
    label: str
    help: str
    advanced: bool
    default: Any
    options: tuple[Any, ...] = ()
    labels: dict[Any, str] = field(default_factory=dict)
    integer: bool = False
    step: float | None = None
    number_format: str | None = None
    optional: bool = False
    """An empty text (or empty multiselect) means ``None``: 'use the default behaviour'."""

    @property
    def section(self) -> str:
        return self.path.split(".", 1)[0] if "." in self.path else ""

    @property
    def name(self) -> str:
        """The label without its note in brackets, for sentences: ``Epochs`` for ``Epochs (at most)``."""
        return re.sub(r"\s*\([^)]*\)", "", self.label).strip() or self.label

    def option_label(self, value: Any) -> str:
        """The readable name of a choice (its label, else the value itself)."""
        return self.labels.get(value, str(value))


SECTION_TITLES = {
    "": "Run",
    "data": "Data split",
    "preprocessing": "Preparing the columns",
    "image": "Pictures",
    "architecture": "Network",
    "optimizer": "Optimiser",
    "scheduler": "Learning-rate schedule",
    "early_stopping": "Early stopping",
    "training": "Training",
}


def field_key(path: str, task: str = "classification") -> str:
    """The widget key of a spec field, e.g. ``train__training__epochs``.

    Picture tasks have keys of their own (``train__img__training__epochs``): their settings and
    defaults differ from a table's, and the session keeps both while the user switches data sets."""
    from studio.modalities import modality

    kind = task_info(task).kind
    prefix = KEY_PREFIX + getattr(modality(kind), "form_key_prefix", f"{kind}__")
    return prefix + path.replace(".", "__")


def metric_choices(task: str) -> tuple[str, ...]:
    return metrics_for(task)


def not_applicable(task: str, architecture: str | None = None) -> frozenset[str]:
    """Spec sections and fields that do nothing for ``task`` (with ``architecture``): picture settings for
    a table; column preparation, feature columns and fold models ('use all my data') for pictures; fold
    models for a network whose catalogue entry refuses them (a pretrained text network: as many copies of
    it as folds)."""
    from studio.modalities import modality

    info = task_info(task)
    # 'use all my data': kinds that train fold models, with a network that allows them
    fold_models = getattr(modality(info.kind), "ensembles", False) and not (
        architecture is not None and ARCHITECTURES[architecture].no_fold_models
    )
    return frozenset(
        {info.unused_section}
        | (set() if info.uses_feature_columns else {"data.features"})
        | (set() if fold_models else {"data.use_all_data", "data.folds"})
    )


def form_fields(
    architecture: str, choices: dict[str, typing.Sequence[Any]] | None = None, task: str = "classification"
) -> list[FormField]:
    """Every widget of the form for ``task`` and the chosen ``architecture``, in section order.

    ``choices`` turns a free-text or list field into a pick list, e.g. ``{"early_stopping.metric":
    metric_choices(task), "data.features": columns}``; the page knows those, the spec does not.
    """
    choices = dict(choices or {})
    choices.setdefault("training.devices", devices_choices())
    found: list[FormField] = []
    _walk(RunSpec, "", choices, found, PAGE_CHOSEN | not_applicable(task, architecture), task)
    params_model = ARCHITECTURES[architecture].params_model
    for name, info in params_model.model_fields.items():
        key = f"{KEY_PREFIX}arch_{architecture}__{name}"
        found.append(_field(f"architecture.params.{name}", key, info, choices))
    if task_info(task).spec_defaults or ARCHITECTURES[architecture].suggested_learning_rate:
        # the task's own defaults (pictures: mixed precision on GPUs), the network's learning rate
        defaults = task_defaults(task, architecture)
        found = [
            dataclasses.replace(f, default=field_value(defaults, f.path))
            if f.section not in ("", "architecture")
            else f
            for f in found
        ]
    section_order = list(SECTION_TITLES)
    found.sort(key=lambda f: section_order.index(f.section) if f.section in section_order else 99)
    return found


def task_defaults(task: str, architecture: str | None = None) -> RunSpec:
    """The spec a task (with this network, else its default one) starts from when nothing is changed
    (a placeholder data set)."""
    data: dict[str, Any] = {"task": task, "data": {"dataset_id": "defaults", "target": "label"}}
    if architecture is not None:
        data["architecture"] = {"name": architecture}
    return RunSpec.from_dict(data)


def _walk(
    model: type[BaseModel],
    prefix: str,
    choices: dict[str, Any],
    found: list[FormField],
    skip: frozenset[str],
    task: str,
) -> None:
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        if path in skip:
            continue
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, StudioModel):
            _walk(annotation, f"{path}.", choices, found, skip, task)
            continue
        found.append(_field(path, field_key(path, task), info, choices))


def _field(path: str, key: str, info: FieldInfo, choices: dict[str, Any]) -> FormField:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    annotation, optional = _unwrap_optional(info.annotation)
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    common = {
        "path": path,
        "key": key,
        "label": info.title or path.rsplit(".", 1)[-1].replace("_", " ").capitalize(),
        "help": info.description or "",
        "advanced": bool(extra.get("advanced", False)),
        "default": default,
        "labels": dict(extra.get("labels") or {}),
        "optional": optional,
    }
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return FormField(widget="select", options=typing.get_args(annotation), **common)
    if origin is list:
        return FormField(widget="multiselect", options=tuple(choices.get(path, ())), **common)
    if annotation is bool:
        return FormField(widget="checkbox", **common)
    if annotation in (int, float):
        return FormField(widget="number", **common, **_number_settings(info, annotation is int, default))
    if path in choices:  # a sequence of values, or a mapping of values to their words
        words = choices[path] if isinstance(choices[path], dict) else {}
        common["labels"] = {**common["labels"], **words}
        return FormField(widget="select", options=tuple(choices[path]), **common)
    return FormField(widget="text", **common)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _number_settings(info: FieldInfo, integer: bool, default: Any) -> dict[str, Any]:
    """The step of the + and - buttons, and the display format.

    The spec's bounds are not handed to the widget: a browser number field that has limits keeps its
    old value when a typed one is outside them, so the page would show one number and train with
    another. :func:`check_values` says what is allowed instead. Decimals are shown with ``%g``, so a
    typed value is never rounded for display."""
    if integer:
        return {"integer": True, "step": 1, "number_format": "%d"}
    high = next((item.le for item in info.metadata if isinstance(item, annotated_types.Le)), None)
    value = abs(float(default or 0.0))
    if 0.01 <= value < 1 and (high is not None and high <= 1):
        step = 0.05
    elif 0 < value < 0.01:
        step = 10 ** math.floor(math.log10(value))
    else:
        step = 0.1
    return {"integer": False, "step": step, "number_format": "%g"}


def field_value(spec: RunSpec, path: str) -> Any:
    """The value at a dotted path of ``spec`` (``architecture.params.width`` included)."""
    return get_dotted(spec, path)


def preset_values(preset: str) -> dict[str, Any]:
    """The settings a preset changes, as ``{dotted path: value}`` (``SpecError``-free: unknown -> {})."""
    return dict(PRESETS.get(preset, {}))


@dataclass(frozen=True)
class FormCheck:
    """The form's values checked by the spec: the spec when they are all allowed, else what is wrong."""

    spec: RunSpec | None
    field_errors: dict[str, str] = field(default_factory=dict)
    """``{dotted path: sentence}`` for values the spec does not allow, to show under their widgets."""
    errors: tuple[str, ...] = ()
    """Sentences about combinations of values (no one widget to show them under)."""

    @property
    def problems(self) -> list[str]:
        """Every sentence, those about single values first."""
        return [*self.field_errors.values(), *self.errors]


def check_values(
    *,
    dataset_id: str,
    target: str | None,
    task: str,
    architecture: str,
    values: dict[str, Any],
    fields: list[FormField] | None = None,
) -> FormCheck:
    """Check the form's values with the spec, and build the spec from exactly those values.

    No value is ever replaced (by an older one, a bound or a default): the spec trains with what the
    form shows, or there is no spec and the form says why, one plain sentence per value naming the
    setting by its title, e.g. ``Epochs must be at least 1 (you typed 0).``. The rules and bounds are
    the spec's own (its field constraints and validators); ``fields`` are the form's widgets (by
    default those of :func:`form_fields`). With no ``target`` yet (the page asks for it itself), the
    other values are checked and there is no spec.
    """
    by_path = {f.path: f for f in fields or form_fields(architecture, task=task)}
    field_errors: dict[str, str] = {}
    data: dict[str, Any] = {
        "task": task,
        "data": {"dataset_id": dataset_id} | ({} if target is None else {"target": target}),
        "architecture": {"name": architecture, "params": {}},
    }
    for path, value in values.items():
        if isinstance(value, str):
            value = value.strip()
        if value is None and path in by_path and by_path[path].widget == "number":
            field_errors[path] = f"{by_path[path].name} is empty: type a number."
        elif value is None or (isinstance(value, (str, list)) and not value):
            continue  # an empty box means the spec's default (no run name, every useful column)
        else:
            set_dotted(data, path, value)

    # The network's settings on their own first: inside the spec, their errors lose their fields (the
    # spec reports them all under "architecture").
    errors: list[str] = []
    skip = {"data.target"} if target is None else set()
    try:
        ARCHITECTURES[architecture].params_model.model_validate(data["architecture"]["params"])
    except ValidationError as err:
        _sort_errors(err, "architecture.params.", by_path, field_errors, errors)
        skip.add("architecture")
    try:
        spec = RunSpec.model_validate(data)
    except ValidationError as err:
        _sort_errors(err, "", by_path, field_errors, errors, skip)
        spec = None
    if field_errors or errors or target is None:
        return FormCheck(None, field_errors, tuple(errors))
    return FormCheck(spec)


def _sort_errors(
    err: ValidationError,
    prefix: str,
    by_path: dict[str, FormField],
    field_errors: dict[str, str],
    errors: list[str],
    skip: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Errors about one widget's value go to ``field_errors``; the others (combinations) to ``errors``."""
    for error in err.errors():
        path = prefix + ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
        if path in skip:
            continue
        form_field = by_path.get(path)
        if form_field is not None:
            field_errors.setdefault(path, value_problem(error, form_field.name))
        else:
            errors.append(_sentence(str((error.get("ctx") or {}).get("error") or error["msg"])))


BOUND_WORDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "more than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


def value_problem(error: Any, name: str) -> str:
    """One pydantic error about one value as a sentence for a page, e.g. ``Learning rate must be more
    than 0 (you typed -1).`` The bound is the spec field's constraint, which the error carries."""
    kind, ctx = error["type"], error.get("ctx") or {}
    typed = error.get("input")
    you_typed = f" (you typed {_shown(typed, group=False)})" if isinstance(typed, (int, float, str)) else ""
    if kind in BOUND_WORDS:
        key, words = BOUND_WORDS[kind]
        return f"{name} must be {words} {_shown(ctx[key])}{you_typed}."
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{name} must be a whole number{you_typed}."
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"{name} must be a number{you_typed}."
    if kind == "string_too_long":
        return f"{name} must be at most {ctx.get('max_length')} characters long."
    if kind == "value_error":
        return f"{name} {str(ctx.get('error', error['msg'])).rstrip('.')}{you_typed}."
    return f"{name}: {_sentence(error['msg'])}"


def _shown(value: Any, group: bool = True) -> str:
    """A number as a person reads it: ``0``, ``-1``, ``0.02``, ``10,000`` (``10000`` as typed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}" if group and abs(value) >= 10_000 else str(int(value))
    return plain_number(float(value))


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:] + "."


# --------------------------------------------------------------------------- rows and batches
def usable_rows(profile: dict[str, Any], target: str) -> int:
    """Rows that have a target value (the others are dropped before training)."""
    try:
        missing = column_profile(profile, target)["missing"]
    except KeyError:
        missing = 0
    return max(0, int(profile["n_rows"]) - int(missing))


def split_rows(spec: RunSpec, n_rows: int) -> tuple[int, int, int]:
    """About how many rows go to training, validation and test."""
    val = round(n_rows * spec.data.val_fraction)
    test = round(n_rows * spec.data.test_fraction)
    return max(0, n_rows - val - test), val, test


def effective_batch_size(spec: RunSpec, train_rows: int) -> int:
    """The batch size training will use (the automatic rule when the spec says 0)."""
    if spec.training.batch_size:
        return spec.training.batch_size
    return int(min(512, max(32, 2 ** round(math.log2(max(train_rows, 1) / 50)))))


# --------------------------------------------------------------------------- risky values
EPOCHS_VERY_HIGH = 1000
EPOCHS_HIGH_WITHOUT_STOPPING = 300
FEW_TRAIN_ROWS = 50
FEW_CHECK_ROWS = 10


def risky_values(spec: RunSpec, n_rows: int, unit: str = "rows") -> list[str]:
    """Plain-language warnings about allowed but risky settings for a table with ``n_rows`` usable rows
    (or a set of ``n_rows`` pictures, with ``unit="pictures"``).

    Each says what will probably happen and what to do instead. Training still starts if the user
    wants it to.
    """
    found: list[str] = []
    lr = spec.optimizer.learning_rate
    usual_low, usual_high = _usual_range("learning_rate")
    if lr > usual_high:
        found.append(
            f"The learning rate {plain_number(lr)} is far above the usual range "
            f"({plain_number(usual_low)} to {plain_number(usual_high)}): "
            "training will probably jump around and not learn. Try 0.001."
        )
    elif lr < usual_low:
        found.append(
            f"The learning rate {plain_number(lr)} is far below the usual range "
            f"({plain_number(usual_low)} to {plain_number(usual_high)}): "
            "the model will barely change from epoch to epoch. Try 0.001."
        )
    train, val, test = split_rows(spec, n_rows)
    batch = spec.training.batch_size
    if batch and batch > train:
        found.append(
            f"The batch size {batch:,} is larger than the about {train:,} training {unit}, so each epoch is "
            "a single update and the model learns slowly. Set it to 0 (automatic) or below that count."
        )
    epochs = spec.training.epochs
    if epochs >= EPOCHS_VERY_HIGH:
        found.append(
            f"{epochs:,} epochs is very many: it can take a long time"
            + (", although early stopping usually ends much sooner." if spec.early_stopping.enabled else ".")
            + (" Most tables need fewer than 300." if unit == "rows" else "")
        )
    elif epochs > EPOCHS_HIGH_WITHOUT_STOPPING and not spec.early_stopping.enabled:
        found.append(
            f"With early stopping off, all {epochs:,} epochs run even after the model stops improving; "
            "that takes longer and tends to overfit. Turn 'Stop early' on or use fewer epochs."
        )
    if n_rows and train < FEW_TRAIN_ROWS:
        found.append(
            f"Only about {train:,} {unit} are left to train on after holding back validation and test {unit}; "
            f"the model may not learn much. Lower the validation and test shares, or add {unit}."
        )
    elif n_rows and min(val, test) < FEW_CHECK_ROWS:
        found.append(
            f"Only about {min(val, test):,} {unit} are held back for {'validation' if val <= test else 'test'}, "
            "so its scores will jump around by chance. Raise that share if you can."
        )
    return found


def plain_number(value: float) -> str:
    """``0.00001`` rather than ``1e-05``: people read decimals, not exponents."""
    if value == 0 or 1e-9 <= abs(value) < 1e9:
        return f"{value:.9f}".rstrip("0").rstrip(".")
    return f"{value:g}"


def _usual_range(name: str) -> tuple[float, float]:
    extra = RunSpec.model_fields["optimizer"].annotation.model_fields[name].json_schema_extra
    low, high = extra["usual"]  # type: ignore[index]
    return float(low), float(high)


# --------------------------------------------------------------------------- device and time
def visible_gpu_names() -> list[str]:
    """Names of the GPUs training may use (respects ``CUDA_VISIBLE_DEVICES``), without importing torch."""
    return [name for _, name in system.visible_gpus()]


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def device_choices(gpus: list[str] | None = None) -> tuple[str, ...]:
    gpus = visible_gpu_names() if gpus is None else gpus
    return ("auto", "cpu", *(f"cuda:{i}" for i in range(len(gpus))))


def devices_choices(gpus: list[str] | None = None) -> dict[str, str]:
    """The Devices pick list (``training.devices``): one, every free GPU, or each count up to the GPUs
    this machine has, with their words."""
    gpus = visible_gpu_names() if gpus is None else gpus
    choices = {"1": "1", "auto": "auto: every free GPU"}
    choices.update({str(n): f"{n} GPUs" for n in range(2, len(gpus) + 1)})
    return choices


def device_text(requested: str, gpus: list[str] | None = None, devices: str = "1") -> str:
    """Where a run asking for ``requested`` on ``devices`` devices will train, e.g. ``GPU 0: NVIDIA
    H100``, ``GPUs 0–3 (4 devices): NVIDIA H100`` or ``CPU (8 cores)``."""
    gpus = visible_gpu_names() if gpus is None else gpus
    cpu = f"CPU ({cpu_cores()} cores)"
    on_cpu = requested == "cpu" or (requested == "auto" and not gpus)
    if on_cpu and devices not in ("1", "auto"):
        return f"{cpu}, in {devices} processes that share each batch (slower than one; for testing)"
    if on_cpu:
        return cpu
    if not gpus:
        return f"no GPU here, so a run asking for '{requested}' cannot start; choose 'auto' or 'cpu'"
    if devices not in ("1",) and not requested.startswith("cuda:"):
        count = len(gpus) if devices == "auto" else int(devices)
        if count > len(gpus):
            return (
                f"{count} GPUs asked, but this machine has {len(gpus)}: set Devices to {len(gpus)} or 'auto'"
            )
        names = ", ".join(sorted(set(gpus[:count])))
        if count > 1:
            which = (
                f"every free one when the run starts (up to {count})"
                if devices == "auto"
                else f"{count} free ones"
            )
            return f"GPUs, {which}, sharing each batch: {names}"
    index = int(requested.split(":", 1)[1]) if ":" in requested else 0
    if index >= len(gpus):
        return f"GPU {index} does not exist (this machine has {len(gpus)}, numbered from 0)"
    more = (
        f", or another of the {len(gpus)} GPUs when it is busy"
        if requested == "auto" and len(gpus) > 1
        else ""
    )
    return f"GPU {index}: {gpus[index]}{more}"


# Measured with `python -m studio train` on a busy 2-core CPU: the wine (178 rows) and breast-cancer
# (569 rows) samples with the default MLP, 2 and 60 epochs each, early stopping off. About 10 s go to
# starting the worker (imports, MLflow run) and writing the bundle; each epoch then costs about 0.2 s
# (validation, logging), nearly the same for both tables. The step and row costs are small guesses
# that only matter for large tables and wide networks.
STARTUP_SECONDS = 10.0
EPOCH_SECONDS = 0.2
STEP_SECONDS = 0.005
ROW_SECONDS = 0.00001
GPU_ROW_SPEEDUP = 10.0


BUSY_NOTE = (
    "While other runs train or the computer is busy with other work, expect about twice as long or more: "
    "a ballpark, not a promise."
)


@dataclass(frozen=True)
class TimeEstimate:
    seconds: float
    text: str


def estimate_time(spec: RunSpec, n_rows: int, n_features: int, on_gpu: bool = False) -> TimeEstimate:
    """A rough upper guess of the training time: startup + epochs x (steps + rows) costs.

    It assumes every epoch runs (early stopping usually ends sooner) and an idle machine: the costs were
    measured with nothing else running, and a busy machine takes about twice as long or more.
    """
    train, _, _ = split_rows(spec, n_rows)
    batch = effective_batch_size(spec, train)
    steps = math.ceil(train / batch) if train else 0
    row_cost = ROW_SECONDS * _network_cost(spec, n_features) / (GPU_ROW_SPEEDUP if on_gpu else 1.0)
    per_epoch = EPOCH_SECONDS + steps * STEP_SECONDS + train * row_cost
    models, each = fold_models(spec)
    seconds = STARTUP_SECONDS + models * spec.training.epochs * per_epoch
    stop = " Early stopping usually ends it sooner." if spec.early_stopping.enabled else ""
    text = (
        f"Rough guess for an idle machine: at most about {_duration(seconds)} "
        f"({spec.training.epochs:,} epochs over about {train:,} rows{each}).{stop} {BUSY_NOTE}"
    )
    return TimeEstimate(seconds=seconds, text=text)


def fold_models(spec: RunSpec) -> tuple[int, str]:
    """How many models a run trains, one after another ('use all my data': its fold models), and the
    words a time guess adds for them (``; 5 fold models, each``; empty for one)."""
    models = spec.data.folds if spec.data.use_all_data else 1
    return models, (f"; {models} fold models, each" if models > 1 else "")


def _network_cost(spec: RunSpec, n_features: int) -> float:
    """Work per row relative to the default MLP on a table of about 13 columns."""

    def mlp(features: int, layers: int, width: int) -> float:
        return features * width + (layers - 1) * width * width + width

    reference = mlp(13, 2, 128)
    if spec.architecture.name != "mlp":
        return max(0.05, n_features / reference)
    params = spec.architecture.params
    work = mlp(max(n_features, 1), int(params.get("hidden_layers", 2)), int(params.get("width", 128)))
    return max(0.05, work / reference)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(5, round(seconds / 5) * 5):.0f} seconds"
    if seconds < 90 * 60:
        return f"{round(seconds / 60):.0f} minutes"
    return f"{seconds / 3600:.1f} hours"
