"""The login in a real browser, against ``python -m studio serve --login`` (bound to 127.0.0.1 with the
login forced on, so nothing is exposed): no page opens without the password, not even by its address; a
wrong password is refused with a message, the right one opens the studio; the MLflow UI's port refuses
calls without the studio user's credentials and answers them with.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import Studio, stop_studio

pytestmark = pytest.mark.e2e

APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


@pytest.fixture
def login_studio(tmp_path: Path, studio_env: dict[str, str]):
    """``serve --login`` on loopback with one user, ada; whatever is left of it is killed afterwards."""
    from studio.server import auth

    auth.add_user("ada", "correct horse")
    running = Studio(tmp_path, studio_env, "--login", "--no-standby")  # (no job: no warm worker)
    yield running
    stop_studio(running, tmp_path)


def settle(page) -> None:
    page.wait_for_selector(APP_IDLE, timeout=60_000)
    page.wait_for_timeout(300)


def shows_only_the_login_form(page) -> None:
    page.get_by_role("button", name="Log in").wait_for(timeout=60_000)
    settle(page)
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    headings = [h.strip() for h in page.get_by_role("heading").all_inner_texts()]
    assert headings == ["Training Studio"], headings
    assert page.locator('[data-testid="stFileUploader"]').count() == 0


def log_in(page, name: str, password: str) -> None:
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def mlflow_call(port: int, credentials: tuple[str, str] | None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/create",
        data=json.dumps({"name": "made-from-outside"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_pages_need_the_password_and_mlflow_needs_the_credentials(login_studio, browser, page, screenshots):
    studio = login_studio
    studio.wait_for("Training Studio is ready", timeout=180)
    assert "Login is on: 1 user in " in studio.text()

    # The first request after the start is a page's own address: still only the login form.
    page.goto(f"{studio.url}/train")
    shows_only_the_login_form(page)
    assert page.get_by_text("Page not found").count() == 0
    page.screenshot(path=str(screenshots / "login-1-form.png"), full_page=True)

    log_in(page, "ada", "wrong password")
    page.get_by_text("Wrong user name or password.").wait_for(timeout=30_000)
    shows_only_the_login_form(page)
    page.screenshot(path=str(screenshots / "login-2-wrong.png"), full_page=True)

    log_in(page, "ada", "correct horse")
    page.get_by_role("heading", name=re.compile("Train")).first.wait_for(
        timeout=60_000
    )  # the address asked for
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Data").click()
    page.get_by_role("heading", name="Data").first.wait_for(timeout=60_000)
    settle(page)
    assert page.get_by_text("Logged in as").count() == 1
    page.screenshot(path=str(screenshots / "login-3-in.png"), full_page=True)

    # Another browser (a new session) opening a run's address gets the form, then that run's page.
    other = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        other.goto(f"{studio.url}/runs?job=no-such-job")
        shows_only_the_login_form(other)
        log_in(other, "ada", "correct horse")
        other.locator('[data-testid="stSidebarNav"]').wait_for(timeout=60_000)
        other.get_by_text("no-such-job").first.wait_for(timeout=60_000)  # the run page says there is none
        settle(other)
        assert "/runs?job=no-such-job" in other.url
        other.screenshot(path=str(screenshots / "login-4-deep-link.png"), full_page=True)
    finally:
        other.close()

    page.get_by_role("button", name="Log out").click()
    page.get_by_text("You are logged out.").wait_for(timeout=30_000)
    shows_only_the_login_form(page)

    # The MLflow UI's port: 401 without the studio user's credentials, the call goes through with them.
    studio.wait_for("MLflow UI ready", timeout=240)
    assert "asks for a studio user name and password" in studio.text()
    status, headers, body = mlflow_call(studio.mlflow_port, None)
    assert status == 401, body
    assert headers["WWW-Authenticate"].startswith("Basic ")
    assert mlflow_call(studio.mlflow_port, ("ada", "wrong password"))[0] == 401
    status, _, body = mlflow_call(studio.mlflow_port, ("ada", "correct horse"))
    assert status == 200, body
    assert json.loads(body)["experiment_id"]
    from studio import tracking

    assert tracking.client().get_experiment_by_name("made-from-outside") is not None

    # The MLflow UI itself opens in a browser that has the credentials.
    context = browser.new_context(http_credentials={"username": "ada", "password": "correct horse"})
    try:
        ui = context.new_page()
        refused = []
        ui.on("response", lambda r: r.status in (401, 403, 429, 502) and refused.append((r.status, r.url)))
        response = ui.goto(f"http://127.0.0.1:{studio.mlflow_port}/")
        assert response.status == 200
        ui.get_by_text("made-from-outside").first.wait_for(timeout=90_000)  # listed by the UI's own API calls
        ui.screenshot(path=str(screenshots / "login-5-mlflow.png"))
        assert refused == []
    finally:
        context.close()
    assert studio.stop() == 0
