"""Nothing the studio starts asks the internet for anything: MLflow's telemetry is off for the CLI, the
scheduler and its workers (serve's children are checked in tests/auth/test_serve_login.py)."""

from __future__ import annotations

import pytest


def test_scheduler_and_workers_get_mlflow_telemetry_off(monkeypatch: pytest.MonkeyPatch, studio_home) -> None:
    from studio.core.settings import child_env

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    assert child_env()["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_the_cli_turns_mlflow_telemetry_off_but_keeps_a_users_choice(
    monkeypatch: pytest.MonkeyPatch, studio_home
) -> None:
    import os

    from studio.cli import main

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    assert main(["datasets", "list"]) == 0
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    assert main(["datasets", "list"]) == 0
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"
