"""``python -m studio users add/list/remove`` and ``serve`` refusing to be reachable without a user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio import cli
from studio.server import auth
from tests.mlflow_store import new_store
from tests.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def studio(*args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "studio", *args],
        cwd=REPO_ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("STUDIO_PASSWORD", "STUDIO_USER", auth.LOGIN_ENV)
    }
    return dict(
        clean,
        STUDIO_HOME=str(tmp_path / "home"),
        MLFLOW_TRACKING_URI=new_store(f"{tmp_path}/mlruns"),
        STUDIO_PASSWORD_FILE=str(tmp_path / "secrets" / "users"),
    )


def test_users_add_list_remove_from_scripts(env: dict[str, str], tmp_path: Path) -> None:
    added = studio("users", "add", "ada", "--password-stdin", env=env, stdin="correct horse\n")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"Added 'ada' in {tmp_path / 'secrets' / 'users'}."
    assert studio("users", "add", "bob", "--password-stdin", env=env, stdin="battery staple").returncode == 0
    changed = studio("users", "add", "ada", "--password-stdin", env=env, stdin="new password 1\n")
    assert changed.stdout.startswith("Changed the password of 'ada'")
    assert studio("users", "list", env=env).stdout.splitlines() == ["ada", "bob"]
    assert auth.verify("ada", "new password 1", tmp_path / "secrets" / "users")

    removed = studio("users", "remove", "bob", env=env)
    assert removed.returncode == 0 and removed.stdout.startswith("Removed 'bob'")
    missing = studio("users", "remove", "bob", env=env)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip() == "error: There is no user 'bob' (users: ada)."
    short = studio("users", "add", "carl", "--password-stdin", env=env, stdin="short\n")
    assert (short.returncode, short.stderr.strip()) == (
        2,
        "error: The password must have at least 8 characters.",
    )
    bad = studio("users", "add", "carl:x", "--password-stdin", env=env, stdin="correct horse\n")
    assert bad.returncode == 2 and "cannot be a user name" in bad.stderr and "Traceback" not in bad.stderr


def test_users_list_when_there_is_nobody(env: dict[str, str]) -> None:
    listed = studio("users", "list", env=env)
    assert listed.returncode == 0
    assert listed.stdout.startswith("No users yet") and "python -m studio users add NAME" in listed.stdout


def test_users_add_without_a_terminal_asks_for_password_stdin(env: dict[str, str]) -> None:
    result = studio("users", "add", "ada", env=env, stdin="")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: Type the password at a terminal, or pass --password-stdin and send it on standard input."
    )


def test_users_add_at_a_terminal_asks_twice(
    studio_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    typed = iter(["correct horse", "correct horsE"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(typed))
    assert cli.main(["users", "add", "ada"]) == 2
    assert capsys.readouterr().err.strip() == "error: The two passwords differ; nothing was changed."
    assert auth.list_users() == []
    typed = iter(["correct horse", "correct horse"])
    assert cli.main(["users", "add", "ada"]) == 0
    assert auth.verify("ada", "correct horse")


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_serve_on_an_exposed_address_without_users_refuses_in_one_line(
    env: dict[str, str], host: str
) -> None:
    result = studio(
        "serve", "--host", host, "--port", str(free_port()), "--mlflow-port", str(free_port()), env=env
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"the studio listens on {host}, which other computers can reach, so it needs a login"
    )
    assert "python -m studio users add NAME" in lines[0] and "STUDIO_PASSWORD" in lines[0]
    assert not (Path(env["STUDIO_HOME"]) / "logs").exists()  # nothing was started


def test_serve_with_login_on_loopback_also_needs_a_user(env: dict[str, str]) -> None:
    result = studio(
        "serve", "--login", "--port", str(free_port()), "--mlflow-port", str(free_port()), env=env
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "the studio was started with --login, so it needs a login, and it has no user"
    )
    assert "Traceback" not in result.stderr


def test_a_short_start_up_password_is_refused_before_anything_starts(env: dict[str, str]) -> None:
    env = dict(env, STUDIO_PASSWORD="short")
    result = studio(
        "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--mlflow-port", str(free_port()), env=env
    )
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "STUDIO_PASSWORD (for the user 'admin') cannot be used: The password must have at least 8 characters.",
    )
    assert not Path(env["STUDIO_PASSWORD_FILE"]).exists()
