"""The search space: which settings a search tries, and over which ranges, declared once per data kind
and network and derived from the run spec's own fields (their names, titles and limits).

A dimension is named by the spec path it sets (``optimizer.learning_rate``); the one exception is
``augmentation``, a single 0–1 strength that sets the picture changes together. A dimension may apply
only under another's value (the MLP's width only when the network is the MLP). A user narrows the space
with a mapping (a YAML file or the Train page's folded section)::

    optimizer.learning_rate: {low: 0.0003, high: 0.01}
    architecture.name: [mlp]           # only these choices
    training.batch_size: 32            # fixed: not searched

Only the standard library and the spec are imported here (the Train page uses it).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from typing import Any

from studio.core.errors import SpecError
from studio.core.search_dims import AUGMENTATION, Dimension, choice, number

__all__ = [
    "AUGMENTATION",
    "Dimension",
    "SearchSpace",
    "default_space",
    "narrow",
    "starting_point",
    "trial_spec",
]


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]
    fixed: dict[str, Any]
    """Settings a narrowing fixed to one value: every trial uses them."""

    @property
    def names(self) -> list[str]:
        return [d.path for d in self.dimensions]

    def get(self, path: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.path == path), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the search's record."""
        return {
            "dimensions": [
                {**d.__dict__, "choices": list(d.choices), "when": list(d.when) if d.when else None}
                for d in self.dimensions
            ],
            "fixed": dict(self.fixed),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        dims = []
        for item in data["dimensions"]:
            when = item.get("when")
            dims.append(
                Dimension(
                    **{
                        **item,
                        "choices": tuple(item.get("choices") or ()),
                        "when": (when[0], tuple(when[1])) if when else None,
                    }
                )
            )
        return cls(tuple(dims), dict(data.get("fixed") or {}))

    def narrowing_text(self) -> str:
        """The space as the YAML a user edits to narrow it (one line per setting, with its title)."""
        lines = []
        for dim in self.dimensions:
            value = dim.as_narrowing()
            if isinstance(value, dict):
                shown = f"{{low: {value['low']:g}, high: {value['high']:g}}}"
            else:
                shown = "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
            lines.append(f"{dim.path}: {shown}  # {dim.title}")
        for path, value in self.fixed.items():
            lines.append(f"{path}: {_yaml_scalar(value)}  # fixed")
        return "\n".join(lines) + "\n"


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- the default spaces
def default_space(
    spec: Any,
    *,
    train_rows: int | None = None,
    networks: list[str] | None = None,
    learning_rate_centre: float | None = None,
) -> SearchSpace:
    """The space a search of this spec's data kind tries, around its settings.

    ``train_rows`` caps the batch sizes (none above half the training rows); ``networks`` are the picture
    networks to try (default: the small CNN and the pretrained ones whose weights are on this machine);
    ``learning_rate_centre`` (the learning-rate finder's suggestion) centres the learning rate's range on
    it (a factor of 10 either way)."""
    from studio.core.spec import TrainingSpec
    from studio.core.tasks import task_info
    from studio.modalities import modality

    kind = modality(task_info(spec.task).kind)
    if not hasattr(kind, "search_dimensions"):
        raise SpecError(f"The studio cannot search settings for {kind.name} data yet.")
    batch_sizes, rates = kind.search_batch_sizes, kind.search_learning_rates
    dims = list(kind.search_dimensions(spec, networks))
    if learning_rate_centre:
        rates = (learning_rate_centre / 10, learning_rate_centre * 10)
    dims += _optimizer_dimensions(rates, getattr(kind, "search_optimizers", ("adamw", "adam", "sgd")))
    limit = max(batch_sizes[0], train_rows // 2) if train_rows else batch_sizes[-1]
    sizes = tuple(size for size in batch_sizes if size <= limit)
    dims.append(choice(TrainingSpec, "batch_size", "training.batch_size", sizes))
    return SearchSpace(tuple(dims), {})


def _optimizer_dimensions(rates: tuple[float, float], names: tuple[str, ...]) -> list[Dimension]:
    from studio.core.spec import OptimizerSpec

    return [
        *([choice(OptimizerSpec, "name", "optimizer.name", names)] if len(names) > 1 else []),
        number(OptimizerSpec, "learning_rate", "optimizer.learning_rate", *rates, log=True),
        number(OptimizerSpec, "weight_decay", "optimizer.weight_decay", 1e-6, 1e-2, log=True),
    ]


def augmentation_settings(strength: float) -> dict[str, Any]:
    """The picture changes one augmentation strength stands for (0: none; 1: turns of up to 30°, zoom
    keeping half the picture, colours varied by 30%); mirroring stays as the spec has it."""
    strength = min(max(float(strength), 0.0), 1.0)
    return {
        "image.rotation_degrees": round(30.0 * strength, 2),
        "image.crop_scale": round(1.0 - 0.5 * strength, 3),
        "image.color_jitter": round(0.3 * strength, 3),
    }


# --------------------------------------------------------------------------- narrowing
def narrow(space: SearchSpace, narrowing: dict[str, Any] | None) -> SearchSpace:
    """The space with a user's narrowing applied: a range (``{low, high}``), a list of choices, or one
    value (fixed). Unknown names and ranges that make no sense are a :class:`SpecError` naming them."""
    if not narrowing:
        return space
    if not isinstance(narrowing, dict):
        raise SpecError("The search space must be a list of 'setting: range' lines (a YAML mapping).")
    known = {d.path: d for d in space.dimensions}
    unknown = [name for name in narrowing if name not in known]
    if unknown:
        raise SpecError(
            f"The search space has no setting '{unknown[0]}'; the settings it searches are: "
            f"{', '.join(known)}."
        )
    dims, fixed = [], dict(space.fixed)
    for dim in space.dimensions:
        if dim.path not in narrowing:
            dims.append(dim)
            continue
        value = narrowing[dim.path]
        if isinstance(value, dict):
            dims.append(_narrow_range(dim, value))
        elif isinstance(value, list | tuple):
            if not value:
                raise SpecError(f"'{dim.path}' lists no values; give at least one.")
            if dim.kind == "choice":
                allowed = [v for v in value if v in dim.choices]
                if len(allowed) != len(value):
                    bad = next(v for v in value if v not in dim.choices)
                    raise SpecError(
                        f"'{dim.path}' cannot be {bad!r} in a search; choose from: {dim.describe()}."
                    )
                dims.append(replace(dim, choices=tuple(value)))
            else:  # a list of numbers for a range: search between the smallest and the largest
                numbers = [_asnumber(dim, v) for v in value]
                dims.append(replace(dim, low=min(numbers), high=max(numbers)))
        else:
            fixed[dim.path] = value
    return SearchSpace(tuple(dims), fixed)


def _asnumber(dim: Dimension, value: Any) -> float:
    if isinstance(value, str):  # YAML reads 1e-5 (no dot) as text
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(f"'{dim.path}' needs numbers, got {value!r}.")
    return int(value) if dim.kind == "int" else float(value)


def _narrow_range(dim: Dimension, value: dict[str, Any]) -> Dimension:
    if dim.kind == "choice":
        raise SpecError(f"'{dim.path}' is a choice; list the values to try, e.g. [{dim.describe()}].")
    extra = set(value) - {"low", "high", "log"}
    if extra:
        raise SpecError(f"'{dim.path}' takes low, high (and log); '{sorted(extra)[0]}' is not one of them.")
    low = _asnumber(dim, value.get("low", dim.low))
    high = _asnumber(dim, value.get("high", dim.high))
    log = bool(value.get("log", dim.log))
    if low > high:
        raise SpecError(f"'{dim.path}': low ({low:g}) is above high ({high:g}).")
    if log and low <= 0:
        raise SpecError(f"'{dim.path}' is searched on a log scale, so low must be above 0 (it is {low:g}).")
    return replace(dim, low=low, high=high, log=log)


def parse_narrowing(text: str) -> dict[str, Any]:
    """A narrowing from YAML text (empty text: none)."""
    if not text.strip():
        return {}
    from studio.core.spec import parse_yaml_mapping

    return parse_yaml_mapping(text)


# --------------------------------------------------------------------------- trials
def active(dim: Dimension, values: dict[str, Any], spec: Any) -> bool:
    """Whether a dimension applies, given the values chosen so far (else the spec's own setting)."""
    if dim.when is None:
        return True
    path, allowed = dim.when
    current = values[path] if path in values else _spec_value(spec, path)
    return current in allowed


def _spec_value(spec: Any, path: str) -> Any:
    from studio.core.spec import get_dotted

    return get_dotted(spec, path)


def suggest(trial: Any, space: SearchSpace, spec: Any) -> dict[str, Any]:
    """Ask an Optuna trial for a value of every dimension that applies; ``{path: value}``."""
    values: dict[str, Any] = dict(space.fixed)
    for dim in space.dimensions:
        if not active(dim, values, spec):
            continue
        if dim.kind == "choice":
            values[dim.path] = trial.suggest_categorical(dim.path, list(dim.choices))
        elif dim.kind == "int":
            values[dim.path] = trial.suggest_int(dim.path, int(dim.low), int(dim.high), log=dim.log)
        else:
            values[dim.path] = trial.suggest_float(dim.path, float(dim.low), float(dim.high), log=dim.log)
    return values


def current_batch(spec: Any) -> int:
    return int(spec.training.batch_size)


def automatic_batch_size(train_rows: int | None) -> int:
    """What batch size 0 (automatic) trains tables with: about 1/50 of the training rows, 32 to 512."""
    return min(512, max(32, (train_rows or 0) // 50))


def _nearest(choices: tuple[Any, ...], value: float) -> Any:
    return min(choices, key=lambda c: (abs(math.log(c) - math.log(value)), c))


def starting_point(space: SearchSpace, spec: Any, train_rows: int | None = None) -> dict[str, Any]:
    """The spec's own settings, as values of the space (clipped into it): the search's first trial, so it
    also measures the settings it would have trained with, and never does worse on validation. An
    automatic batch size becomes the choice nearest to the one it would pick."""
    values: dict[str, Any] = {}
    for dim in space.dimensions:
        if not active(dim, values, spec):
            continue
        if dim.path == "training.batch_size" and not current_batch(spec):
            values[dim.path] = _nearest(dim.choices, automatic_batch_size(train_rows))
            continue
        if dim.path == AUGMENTATION:
            current = min(max((1.0 - float(_spec_value(spec, "image.crop_scale") or 1.0)) / 0.5, 0.0), 1.0)
        else:
            current = _spec_value(spec, dim.path)
        if dim.kind == "choice":
            values[dim.path] = current if current in dim.choices else dim.choices[0]
        else:
            if current is None or isinstance(current, bool) or (dim.log and current <= 0):
                current = dim.low if not dim.log else math.sqrt(dim.low * dim.high)
            if dim.kind == "int" and current == 0:  # e.g. batch size 0 = automatic
                current = dim.low
            number = min(max(current, dim.low), dim.high)
            values[dim.path] = int(round(number)) if dim.kind == "int" else float(number)
    return values


def trial_spec(spec: Any, values: dict[str, Any], name: str | None = None) -> Any:
    """The run spec of one trial: the search's spec with the trial's values (and its name)."""
    changes: dict[str, Any] = {}
    if "architecture.name" in values:  # first: a new network starts from its own default settings
        changes["architecture.name"] = values["architecture.name"]
    for path, value in values.items():
        if path == AUGMENTATION:
            changes.update(augmentation_settings(value))
        elif path != "architecture.name":
            changes[path] = value
    if name:
        changes["name"] = name
    return spec.with_changes(**changes)
