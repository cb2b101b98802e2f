"""Every page's MLflow link comes from one place (``ui.mlflow_ui_url``), which uses the host name the
browser used to reach the studio: a link to 127.0.0.1 would open nothing on another computer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from studio.app import ui


def test_the_link_uses_the_host_the_browser_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ui.MLFLOW_UI_ENV, "http://127.0.0.1:5000/")
    monkeypatch.setattr(ui.st, "context", SimpleNamespace(headers={"Host": "192.168.1.20:8501"}))
    assert ui.mlflow_ui_url() == "http://192.168.1.20:5000"
    monkeypatch.setattr(ui.st, "context", SimpleNamespace(headers={}))
    assert ui.mlflow_ui_url() == "http://127.0.0.1:5000"


def test_no_link_without_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ui.MLFLOW_UI_ENV, raising=False)
    assert ui.mlflow_ui_url() is None


def test_pages_read_the_address_only_through_ui() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for path in [root / "app.py", *sorted((root / "pages").glob("*.py"))]:
        text = path.read_text()
        assert "STUDIO_MLFLOW_UI_URL" not in text and "mlflow_ui_base" not in text, path.name
