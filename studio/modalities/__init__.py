"""Data kinds: one package per kind of data (``tabular``, ``image``, ``text``, ``llm``), each a :class:`Modality`.

``MODALITIES`` maps a kind's name to its implementation; :func:`modality_for` finds the one that trains
a task (from :mod:`studio.core.tasks`). Adding a kind is a package with a ``Modality`` plus one
:func:`register` line here (kinds that do not ship with the studio register themselves from a module
named in ``STUDIO_MODALITIES``). The built-in kinds say which module that is from their
``registry.py`` (:func:`register_lazily`); their modules are imported on first use, so importing this
package stays cheap. :func:`predict_csv` predicts a file with a bundle through the bundle's kind.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from studio.core.tasks import load_plugins, task_info

if TYPE_CHECKING:
    import pandas as pd

    from studio.modalities.base import Modality

MODALITIES: dict[str, Modality] = {}
_BUILTIN: dict[str, str] = {}
"""Kind -> the module that registers its :class:`Modality` when first used (:func:`register_lazily`)."""


def register_lazily(kind: str, module: str) -> None:
    """Say that the module ``module`` registers the data kind ``kind``'s :class:`Modality` when imported:
    a kind's cheap registration (``studio/modalities/<kind>/registry.py``, imported with the tasks) names
    its heavier modality module, which is imported only when the kind is first used."""
    _BUILTIN[kind] = module


def register(modality: Modality) -> Modality:
    """Make ``modality`` the implementation of the data kind ``modality.name``."""
    MODALITIES[modality.name] = modality
    return modality


def modality(kind: str) -> Modality:
    """The implementation of data kind ``kind`` (``tabular``, ``image`` or a registered one)."""
    load_plugins()  # the kinds' registrations (and what they import lazily)
    if kind not in MODALITIES and kind in _BUILTIN:
        importlib.import_module(_BUILTIN[kind])  # registers itself
    if kind not in MODALITIES:
        raise KeyError(f"no data kind named {kind!r}; known: {', '.join(sorted({*_BUILTIN, *MODALITIES}))}")
    return MODALITIES[kind]


def modality_for(task: str) -> Modality:
    """The data kind that trains ``task``."""
    return modality(task_info(task).kind)


def fold_models_by_default(task: str, architecture: str | None, rows: int) -> bool:
    """Whether 'use all my data' (fold models averaged into one) starts on for a data set of ``rows``
    rows: where the task's kind trains fold models and says up to how many rows they are worth their
    cost by default (its ``fold_models_up_to``; tables, and texts read by the bag of words), never for a
    pretrained text network (the spec refuses it: as many copies of it as folds). The Train form ticks
    the switch from this and ``python -m studio train`` trains it, unless told otherwise."""
    from studio.core.spec import ARCHITECTURES

    kind = modality_for(task)
    if not getattr(kind, "ensembles", False):
        return False
    network = ARCHITECTURES.get(architecture or task_info(task).default_architecture)
    if network is None or network.hub_id is not None:
        return False
    return 0 < rows <= int(getattr(kind, "fold_models_up_to", 0))


def predict_csv(
    bundle_zip: str | Path, data_csv: str | Path, out_csv: str | Path | None = None
) -> pd.DataFrame:
    """The data file's columns plus ``predicted_<target>`` (and ``probability_<class>`` per class).

    Written to ``out_csv`` when given. The bundle is checked before the data is read; what the data may
    be depends on the bundle's kind (a table for a tabular model; for an image model a picture, a zip or
    folder of pictures, or a CSV with an ``image`` column): its data kind reads it and predicts.
    """
    from studio.bundle.reader import read_bundle_info

    info = read_bundle_info(bundle_zip)
    result = modality(info["kind"]).predict_file(Path(bundle_zip), info, Path(data_csv).expanduser())
    if out_csv is not None:
        out = Path(out_csv).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        result.to_csv(out, index=False)
    return result
