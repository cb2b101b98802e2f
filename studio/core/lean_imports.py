"""Importing Lightning without the libraries torchmetrics imports for metrics the studio never computes.

``import pytorch_lightning`` imports torchmetrics, whose package imports every metric it has at once. For
the few that need an optional library (image-quality metrics built on torchvision's ResNet, BERTScore
and CLIPScore on transformers, audio metrics on scipy.signal, ``Metric.plot`` on matplotlib) it imports
that library too, when it is installed, and all of them are installed here. That costs about 3 s of
CPU in every process that trains (torchvision's models pull in ``torch._dynamo``), once per job, and
the studio uses none of those metrics: it computes accuracy, F1, AUROC, MAE, RMSE and R²
(``lightning_modules/*/module.py``). Upstream: Lightning-AI/torchmetrics#3457, open in 1.9.0.

:func:`install` (called when ``studio`` is imported) hooks the import of torchmetrics, once: while its
package runs, those libraries read as not installed to torchmetrics alone, so the metrics that need
them are defined without them; afterwards every flag is put back and the hook removed. Nothing else
sees a difference: the studio imports torchvision and transformers itself where a kind needs them, and
a process that imported torchmetrics before ``studio`` is left alone. Calling one of the skipped
metrics in such a process raises torchmetrics' own "needs <library>" error.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

SKIPPED = ("scipy", "torchvision", "transformers", "matplotlib", "scienceplots")
"""The optional libraries torchmetrics' package does not import while the hook runs."""
SKIPPED_FLAGS = (
    "_SCIPY_AVAILABLE",
    "_SCIPY_GREATER_EQUAL_1_8",
    "_SCIPI_AVAILABLE",
    "_TORCHVISION_AVAILABLE",
    "_TRANSFORMERS_AVAILABLE",
    "_TRANSFORMERS_GREATER_EQUAL_4_4",
    "_TRANSFORMERS_GREATER_EQUAL_4_10",
    "_MATPLOTLIB_AVAILABLE",
    "_SCIENCEPLOT_AVAILABLE",
)
"""The flags in ``torchmetrics.utilities.imports`` that gate those imports (torchmetrics 1.9)."""

_saved_flags: dict[str, Any] = {}


class _Wrapped(importlib.abc.Loader):
    """The module's own loader, with ``around(module, run)`` wrapped around its execution. Put back on
    the module's spec once it has run, so nothing later sees this wrapper."""

    def __init__(self, inner: importlib.abc.Loader, around: Callable[[ModuleType, Callable], None]):
        self.inner, self.around = inner, around

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            self.around(module, self.inner.exec_module)
        finally:
            module.__loader__ = self.inner
            if module.__spec__ is not None:
                module.__spec__.loader = self.inner

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, …: the real loader's
        return getattr(self.inner, name)


def _flags_off(module: ModuleType, run: Callable[[ModuleType], None]) -> None:
    run(module)
    for name in SKIPPED_FLAGS:
        if hasattr(module, name):
            _saved_flags[name] = getattr(module, name)
            setattr(module, name, False)


def _package_without_skipped(module: ModuleType, run: Callable[[ModuleType], None]) -> None:
    """Run torchmetrics' ``__init__`` with ``package_available`` (which it imports scipy.signal by)
    answering False for the skipped libraries; afterwards put back that function and every flag."""
    import lightning_utilities.core.imports as lu_imports

    real = lu_imports.package_available

    def package_available(name: str) -> bool:
        return False if name in SKIPPED else real(name)

    lu_imports.package_available = package_available
    try:
        run(module)
    finally:
        lu_imports.package_available = real
        if getattr(module, "package_available", None) is package_available:
            module.package_available = real
        flags = sys.modules.get("torchmetrics.utilities.imports")
        for name, value in _saved_flags.items():
            setattr(flags, name, value)
        _saved_flags.clear()
        uninstall()


_HOOKS = {"torchmetrics": _package_without_skipped, "torchmetrics.utilities.imports": _flags_off}


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        around = _HOOKS.get(name)
        if around is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None  # not a plain installed package: import it as it is
        spec.loader = _Wrapped(spec.loader, around)
        return spec


_FINDER = _Finder()


def install() -> None:
    """Hook torchmetrics' first import (see the module's docstring); nothing if it was imported already
    or the hook is in place."""
    if "torchmetrics" in sys.modules or _FINDER in sys.meta_path:
        return
    sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
