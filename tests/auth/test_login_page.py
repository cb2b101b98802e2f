"""The login gate in app.py, with Streamlit's AppTest: when the studio asks for a login, only the form
shows until the password is right; wrong passwords are limited; idle sessions end; Log out works."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio.server import auth

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 60


def run(at: AppTest) -> AppTest:
    """Rerun through app.py, as a browser's rerun does.

    AppTest starts every run as a fresh server, where Streamlit 1.67 still treats ``pages/`` as an
    old-style multipage app and runs the last page's file directly, without app.py. A real server runs
    app.py (``ui.require_app`` sends a page opened that way back through it; tests/e2e/test_login.py
    checks that in a browser). Forgetting the last page (AppTest has no public way) runs app.py."""
    at._page_hash = at._finished_page_script_hash = ""
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def login_app(studio_home: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv(auth.LOGIN_ENV, "1")
    monkeypatch.setattr(auth, "LIMITER", auth.LoginLimiter())  # a fresh count of wrong passwords
    auth.add_user("ada", "correct horse")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def log_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="login_user").input(name)
    at.text_input(key="login_password").input(password)
    at.button(key="login_submit").click()
    return run(at)


def login_form_shown(at: AppTest) -> bool:
    return any(w.key == "login_user" for w in at.text_input)


def shows_only_the_login_form(at: AppTest) -> bool:
    keys = {w.key for kind in ("text_input", "button", "selectbox", "file_uploader") for w in at.get(kind)}
    return keys == {"login_user", "login_password", "login_submit"} and not at.sidebar.button


def test_only_the_login_form_shows_until_the_password_is_right(login_app: AppTest) -> None:
    at = login_app
    assert shows_only_the_login_form(at)
    assert [t.value for t in at.title] == ["Training Studio"]
    assert at.text_input(key="login_password").value == ""

    log_in(at, "ada", "wrong password")
    assert shows_only_the_login_form(at)
    assert [w.value for w in at.warning] == ["Wrong user name or password."]
    assert at.text_input(key="login_password").value == ""  # not kept in the session

    log_in(at, "ada", "correct horse")
    assert not login_form_shown(at)  # the form is gone
    assert any(b.label == "Add sample: wine" for b in at.button)  # the Data page, the first page
    assert "Logged in as **ada**." in [c.value for c in at.sidebar.caption]
    at.sidebar.button(key="app_log_out").click()
    run(at)
    assert shows_only_the_login_form(at)
    assert [w.value for w in at.warning] == ["You are logged out."]


def test_too_many_wrong_passwords_make_this_computer_wait(login_app: AppTest) -> None:
    at = login_app
    for attempt in range(5):
        log_in(at, "ada", f"guess {attempt}")
    assert [w.value for w in at.warning] == [
        "Too many wrong passwords from this computer: try again in 30 s."
    ]
    log_in(at, "ada", "correct horse")  # even the right one waits
    assert shows_only_the_login_form(at)
    assert at.warning[0].value.startswith("Too many wrong passwords from this computer: try again in ")


def test_a_session_unused_for_the_idle_time_asks_again(login_app: AppTest) -> None:
    at = log_in(login_app, "ada", "correct horse")
    assert not login_form_shown(at)
    at.session_state["studio_login"]["seen"] = time.monotonic() - 8 * 3600 - 1
    run(at)
    assert shows_only_the_login_form(at)
    assert [w.value for w in at.warning] == [
        "You were logged out after 8 hours without use. Log in again to go on."
    ]
    log_in(at, "ada", "correct horse")
    assert not login_form_shown(at)


def test_removing_the_user_ends_their_session(login_app: AppTest) -> None:
    at = log_in(login_app, "ada", "correct horse")
    assert not login_form_shown(at)
    auth.remove_user("ada")
    auth.add_user("bob", "battery staple")
    run(at)
    assert shows_only_the_login_form(at)
    assert "your user was removed" in at.warning[0].value


def test_without_any_user_the_page_says_how_to_add_one(
    studio_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(auth.LOGIN_ENV, "1")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert not login_form_shown(at) and not at.button
    assert "python -m studio users add NAME" in at.error[0].value


def test_without_a_login_the_app_opens_straight_away(
    studio_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(auth.LOGIN_ENV, raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert not login_form_shown(at) and not at.sidebar.button
    assert any(b.label == "Add sample: wine" for b in at.button)


LOGIN_PAGE_IMPORTS = """
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=60).run()
assert [w.key for w in at.text_input] == ["login_user", "login_password"], at
print(sorted(m for m in ("torch", "lightning", "mlflow", "pandas") if m in sys.modules))
"""


def test_the_login_form_imports_nothing_heavy(studio_home: Path) -> None:
    import os
    import subprocess
    import sys

    auth.add_user("ada", "correct horse")
    env = dict(os.environ, **{auth.LOGIN_ENV: "1"})
    result = subprocess.run(
        [sys.executable, "-c", LOGIN_PAGE_IMPORTS, APP],
        cwd=Path(APP).parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "torch" not in result.stdout and "mlflow" not in result.stdout and "lightning" not in result.stdout
