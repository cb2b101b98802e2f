"""Fixtures: a real ``mlflow server`` on loopback (one per module), plain and with basic-auth."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mlflow_server.mlflow_server import MlflowServer, start_mlflow_server


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mlflow_auth_server(tmp_path_factory: pytest.TempPathFactory):
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-auth-server"), auth=True)
    yield server
    server.stop()


@pytest.fixture
def on_server(studio_home: Path, monkeypatch: pytest.MonkeyPatch):
    """Point the studio at a server: ``on_server(server)`` sets ``MLFLOW_TRACKING_URI`` (after
    ``studio_home``, which sets a local store) and returns the server."""

    def point(server: MlflowServer) -> MlflowServer:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        return server

    return point
