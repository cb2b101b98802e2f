"""Names from users (data set, columns, classes, cells, run name) reach the pages as text, never as
Markdown: no picture fetched, no link, no bold, no formula. Real data set, real tiny training run."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio import data as datasets
from studio import jobs
from tests.pages.test_runs_page import run_in_process, spec

ROOT = Path(__file__).resolve().parents[2]


def hostile(url: str = "http://127.0.0.1:9/x") -> dict[str, str]:
    """The hostile names, their pictures pointing at ``url``."""
    return {
        "picture": f"![x]({url})",
        "tag": "<img src=x onerror=alert(1)>",
        "link": "[l](javascript:alert(1))",
        "bold": "**b**",
        "formula": "$x$",
    }


def hostile_csv(url: str = "http://127.0.0.1:9/x", rows: int = 60) -> bytes:
    """A table whose column names are the hostile names; the target (the ``link`` column) has a class
    named like a picture and one in bold."""
    names = hostile(url)
    rng = random.Random(3)
    lines = [",".join([names["picture"], names["tag"], names["bold"], names["formula"], names["link"]])]
    for _ in range(rows):
        a, b = rng.random(), rng.random()
        label = f"{names['bold']} {names['picture']}" if a + b > 1 else names["formula"]
        lines.append(f"{a:.3f},{b:.3f},{rng.choice(['red', 'blue'])},{rng.randint(1, 9)},{label}")
    return ("\n".join(lines) + "\n").encode()


def add_hostile_dataset(url: str = "http://127.0.0.1:9/x") -> datasets.DatasetInfo:
    return datasets.add_csv(hostile_csv(url), name=f"set {hostile(url)['picture']} {hostile(url)['bold']}")


def hostile_run(dataset_id: str, url: str = "http://127.0.0.1:9/x") -> jobs.Job:
    names = hostile(url)
    run_spec = spec(
        dataset_id, f"run {names['picture']} {names['bold']} {names['formula']}", target=names["link"]
    )
    done = run_in_process(run_spec)
    assert done.state == jobs.SUCCEEDED, done.reason
    return done


def shown_markdown(at: AppTest) -> list[str]:
    """Every text of the page that Streamlit renders as Markdown: bodies, titles, alerts, metric values,
    widget labels, tab and expander labels."""
    texts: list[str] = []
    for kind in (
        "markdown",
        "caption",
        "title",
        "header",
        "subheader",
        "info",
        "success",
        "warning",
        "error",
    ):
        texts += [str(e.value) for e in at.get(kind)]
    texts += [str(m.value) for m in at.metric] + [str(m.label) for m in at.metric]
    for kind in ("checkbox", "button", "selectbox", "multiselect", "text_input", "radio", "expander", "tab"):
        texts += [str(getattr(e, "label", "")) for e in at.get(kind)]
    texts += [str(getattr(e, "text", "") or "") for e in at.get("progress")]
    return texts


def assert_no_raw_hostile_text(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    texts = shown_markdown(at)
    for text in texts:
        for raw in hostile().values():
            assert raw not in text, f"{raw!r} reaches Markdown unescaped in {text!r}"


@pytest.fixture
def home(studio_home: Path):
    studio_home.mkdir(parents=True, exist_ok=True)
    yield studio_home
    jobs.stop_scheduler(timeout=5)


def test_data_page_shows_hostile_names_as_text(home: Path) -> None:
    info = add_hostile_dataset()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["data_selected"] = info.id
    at.run()
    assert_no_raw_hostile_text(at)
    assert any("set !\\[x\\]" in h.value for h in at.header)  # the name, escaped, is the heading


def test_runs_and_predict_pages_show_a_hostile_run_as_text(home: Path) -> None:
    info = add_hostile_dataset()
    done = hostile_run(info.id)

    listing = AppTest.from_file(str(ROOT / "pages" / "runs.py"), default_timeout=60).run()
    assert_no_raw_hostile_text(listing)
    assert any("\\*\\*b\\*\\*" in m.value for m in listing.markdown)

    run_page = AppTest.from_file(str(ROOT / "pages" / "runs.py"), default_timeout=60)
    run_page.query_params["job"] = done.id
    run_page.run()
    assert_no_raw_hostile_text(run_page)
    assert run_page.title[0].value.startswith("run !\\[x\\]")

    predict = AppTest.from_file(str(ROOT / "pages" / "predict.py"), default_timeout=60)
    predict.query_params["job"] = done.id
    predict.run()
    assert_no_raw_hostile_text(predict)
    assert any("Predicts **\\[l\\]" in m.value for m in predict.markdown)
