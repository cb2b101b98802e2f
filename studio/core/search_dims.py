"""The words a search space is made of (no Optuna, no torch): a :class:`Dimension` is one setting a
search varies, declared from the run spec's own field (its title and limits). Each data kind declares
its networks' dimensions with these (``studio/modalities/<kind>/search.py``); ``studio.search.space``
puts a whole space together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

AUGMENTATION = "augmentation"
"""The virtual dimension for pictures: 0 shows them as they are, 1 turns, zooms and recolours them most."""
BATCH_SIZES = (16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class Dimension:
    """One setting the search varies: a number range (``low``–``high``, log-scaled for rates) or choices."""

    path: str
    kind: str  # "float", "int" or "choice"
    title: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    when: tuple[str, tuple[Any, ...]] | None = None
    """Searched only while the setting at this path has one of these values (e.g. the MLP's width)."""

    def describe(self) -> str:
        """``0.0001 – 0.1 (log scale)`` or ``mlp, linear``: the range in plain words."""
        if self.kind == "choice":
            return ", ".join(str(c) for c in self.choices)
        scale = " (log scale)" if self.log else ""
        return f"{self.low:g} – {self.high:g}{scale}"

    def as_narrowing(self) -> Any:
        """This dimension as a narrowing entry (the form the YAML takes)."""
        if self.kind == "choice":
            return list(self.choices)
        return {"low": self.low, "high": self.high}


def field_limits(model: Any, name: str) -> tuple[str, float | None, float | None]:
    """A spec field's title and numeric limits (``ge``/``le``), read from its declaration."""
    info = model.model_fields[name]
    low = high = None
    for item in info.metadata:
        low = getattr(item, "ge", None) if getattr(item, "ge", None) is not None else low
        low = getattr(item, "gt", None) if getattr(item, "gt", None) is not None else low
        high = getattr(item, "le", None) if getattr(item, "le", None) is not None else high
        high = getattr(item, "lt", None) if getattr(item, "lt", None) is not None else high
    return info.title or name, low, high


def number(model: Any, field: str, path: str, low: float, high: float, *, log: bool = False, **kw: Any):
    """A range inside the field's own limits."""
    title, field_low, field_high = field_limits(model, field)
    if field_low is not None:
        low = max(low, field_low)
    if field_high is not None:
        high = min(high, field_high)
    kind = "int" if model.model_fields[field].annotation is int else "float"
    return Dimension(path, kind, title, low=low, high=high, log=log, **kw)


def choice(model: Any, field: str, path: str, choices: tuple[Any, ...], **kw: Any) -> Dimension:
    return Dimension(path, "choice", field_limits(model, field)[0], choices=tuple(choices), **kw)
