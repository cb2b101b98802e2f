"""Hostile names in a real browser: a data set, its columns, a class and a run named with Markdown and
HTML (a picture from a local server, an ``<img onerror>``, a ``javascript:`` link, bold, a formula).
Every page is visited; the browser must fetch nothing from that server, open no dialog, and show the
names as typed."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from studio.core.text import WORD_JOINER
from tests.e2e.test_browser import open_page, settle
from tests.e2e.test_train_form import choose, shown_choice
from tests.pages.test_names_as_text import add_hostile_dataset, hostile, hostile_run

pytestmark = pytest.mark.e2e


class Counter(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        Counter.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def bait() -> Iterator[tuple[str, list[str]]]:
    """A tiny HTTP server on 127.0.0.1 that counts the requests it gets; its URL and the list of hits."""
    Counter.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Counter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/x", Counter.hits
    finally:
        server.shutdown()
        server.server_close()


def shown_text(page) -> str:
    """The page's text as a person reads it (``as_text`` adds invisible word joiners to stop links)."""
    return page.inner_text("body").replace(WORD_JOINER, "")


def visit(page, url: str, heading: str) -> str:
    page.goto(url)
    page.get_by_role("heading", name=heading).first.wait_for()
    settle(page)
    page.wait_for_timeout(500)  # let any picture a name might ask for be requested
    return shown_text(page)


def test_every_page_shows_hostile_names_as_text(studio, page, bait) -> None:
    url, hits = bait
    names = hostile(url)
    studio.wait_for("is ready", timeout=120)  # it adds the wine sample first; ours is then the newest
    info = add_hostile_dataset(url)
    job = hostile_run(info.id, url)

    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    asked: list[str] = []
    page.on(
        "request", lambda request: asked.append(request.url) if url.rsplit("/", 1)[0] in request.url else None
    )

    seen = {}
    seen["Data"] = visit(page, studio.url, "Data")
    open_page(page, "Train")  # in the same session: the data set looked at on Data is picked
    page.wait_for_timeout(500)
    seen["Train"] = shown_text(page)
    picked = shown_choice(page, "train_dataset"), shown_choice(page, "train_target")
    seen["Runs"] = visit(page, f"{studio.url}/runs", "Runs")
    seen["run"] = visit(page, f"{studio.url}/runs?job={job.id}", "run ")
    seen["Compare"] = visit(page, f"{studio.url}/compare", "Compare")
    seen["Predict"] = visit(page, f"{studio.url}/predict?job={job.id}", "Predict")
    page.get_by_text("A stored data set").click()
    settle(page)
    choose(page, "predict-rows-dataset", re.compile(r"^set "))
    page.locator(".st-key-predict-run button").click()
    page.get_by_role("heading", name="Predictions").wait_for()
    settle(page)
    page.wait_for_timeout(500)  # the predictions table holds the hostile cells (drawn on a canvas)

    assert not hits and not asked, f"the browser fetched the bait: {hits} {asked}"
    assert not dialogs, dialogs
    assert page.locator(f"img[src='x'], a[href^='javascript'], a[href*='{url}']").count() == 0
    # Shown as typed: the data set's name on Data, the run's name on its page, the columns on Predict.
    assert f"set {names['picture']} {names['bold']}" in seen["Data"]
    assert f"suggests learning to predict {names['link']}" in seen["Data"]
    assert f"run {names['picture']} {names['bold']} {names['formula']}" in seen["run"]
    assert names["bold"] in seen["Runs"] and names["bold"] in seen["Compare"]
    assert picked[0].startswith(f"set {names['picture']} {names['bold']}") and picked[1] == names["link"]
    assert f"Predicts {names['link']}" in seen["Predict"]
    assert names["tag"] in seen["Predict"] and names["formula"] in seen["Predict"]
