"""A bundle is saved without MLflow's scan of every installed distribution, and with the same check of
its requirements (studio.bundle.writer._no_package_scan)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mlflow.utils import requirements_utils

from studio.bundle.writer import _no_package_scan

ENTRY = '''
import mlflow.pyfunc


class Model(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input


mlflow.models.set_model(Model())
'''


@pytest.fixture
def map_not_built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """MLflow's module map as in a new process, with its scan of the installed packages recorded."""
    scans: list[str] = []
    real = requirements_utils.importlib_metadata.packages_distributions

    def recorded():
        scans.append("scan")
        return real()

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(requirements_utils, "_PACKAGES_TO_MODULES", None)
    monkeypatch.setattr(requirements_utils.importlib_metadata, "packages_distributions", recorded)
    return scans


def _save(folder: Path, requirements: list[str]) -> None:
    import mlflow

    entry = folder / "entry.py"
    entry.write_text(ENTRY, encoding="utf-8")
    with _no_package_scan():
        mlflow.pyfunc.save_model(str(folder / "model"), python_model=str(entry), pip_requirements=requirements)


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_the_save_skips_the_scan_and_still_warns_about_a_mismatch(map_not_built: list[str], tmp_path: Path) -> None:
    import mlflow
    import pandas as pd

    kept = _Kept()  # MLflow's loggers do not propagate to the root, where caplog listens
    logger = logging.getLogger("mlflow.utils.requirements_utils")
    level, disabled = logger.level, logger.disabled  # (earlier tests in this process may quiet MLflow)
    logger.setLevel(logging.WARNING)
    logger.disabled = False
    logger.addHandler(kept)
    try:
        _save(tmp_path, [f"mlflow=={mlflow.__version__}", "pandas<1", "no-such-package-here==1.0"])
    finally:
        logger.removeHandler(kept)
        logger.setLevel(level)
        logger.disabled = disabled

    assert map_not_built == []  # no scan
    warned = "\n".join(kept.messages)
    assert f"pandas (current: {pd.__version__}, required: pandas<1)" in warned
    assert "no-such-package-here (current: uninstalled, required: no-such-package-here==1.0)" in warned
    assert "mlflow (current" not in warned  # a requirement that holds is not named
    assert "pandas<1" in (tmp_path / "model" / "requirements.txt").read_text()
    # forgotten again: whatever else needs the map builds it as before
    assert requirements_utils._MODULES_TO_PACKAGES is None
    assert requirements_utils._PACKAGES_TO_MODULES is None
    requirements_utils._init_packages_to_modules_map()
    assert map_not_built == ["scan"]


def test_a_map_built_already_is_left_as_it_is(map_not_built: list[str], tmp_path: Path) -> None:
    requirements_utils._init_packages_to_modules_map()
    built = requirements_utils._MODULES_TO_PACKAGES
    _save(tmp_path, ["pandas>=2"])
    assert requirements_utils._MODULES_TO_PACKAGES is built and map_not_built == ["scan"]
