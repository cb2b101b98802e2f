"""The Train page's "Find the best settings", with Streamlit's AppTest: the search space can be narrowed,
and the press starts a real search of what the form shows (3 trials of 2 epochs), then opens its page.
The Search page of a finished search: tests/search/test_search_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio import data as datasets
from tests.search.conftest import wait_until

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 60


def _train_page() -> AppTest:
    datasets.add_sample("wine")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_search_space_can_be_narrowed_on_the_train_page(search_home: Path) -> None:
    at = _train_page()
    assert at.selectbox(key="search_metric").value == "val/accuracy"
    assert at.selectbox(key="search_budget").options == [
        "5 min",
        "15 min",
        "1 h",
        "Custom time",
        "A number of trials",
    ]
    at.toggle(key="search_space_open").set_value(True).run()
    (area,) = [t for t in at.text_area if t.key.startswith("search_space_")]
    assert "optimizer.learning_rate: {low: 0.0001, high: 0.1}  # Learning rate" in area.value
    area.set_value("optimizer.momentum: 0.5\n").run()
    at.button(key="search_submit").click().run()
    assert any("has no setting 'optimizer.momentum'" in e.value for e in at.error)
    from studio.search.records import list_searches

    assert list_searches() == []


def test_find_the_best_settings_from_the_train_page(search_home: Path) -> None:
    from studio.search import control, records
    from studio.search.records import list_searches

    at = _train_page()
    at.number_input(key="train__training__epochs").set_value(2).run()
    # one model per trial (a small table starts with fold models), and validation shares of 30%: room for 2
    # cross-validation folds (15% gives 5), so 2/5 of the trainings
    at.checkbox(key="train__data__use_all_data").uncheck().run()
    at.number_input(key="train__data__val_fraction").set_value(0.3).run()
    at.selectbox(key="search_budget").set_value("A number of trials").run()
    at.number_input(key="search_trials").set_value(3).run()
    at.button(key="search_submit").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (search,) = list_searches()
    assert search.spec.data.val_fraction == 0.3 and not search.spec.data.use_all_data
    assert search.max_trials == 3 and search.budget_seconds is None and search.metric == "val/accuracy"
    assert search.spec.training.epochs == 2
    assert [t.value for t in at.title] == ["Search"]  # the press opened the search's page
    assert at.query_params["search"] in (search.id, [search.id])

    # the press started it for real (its driver runs); what a search does then, the Search page included,
    # tests/search/test_search_cli.py checks on a search of the same settings run to the end
    wait_until(lambda: control.driver_running(search.id), timeout=60)
    control.cancel_search(search.id)
    assert control.wait_for_search(search.id, timeout=120).state == records.CANCELLED


@pytest.mark.slow  # the finder's own process imports torch (20-30 s here)
def test_suggest_a_learning_rate_fills_the_field_and_centres_the_search(search_home: Path) -> None:
    from studio.search.records import list_searches

    at = _train_page()
    at.button(key="search_lr_find").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    use = at.button(key="search_lr_use")
    suggested = float(use.label.split()[1])
    assert 1e-5 < suggested < 1.0
    assert f"from {suggested / 10:.2g} to {suggested * 10:.2g}" in " ".join(c.value for c in at.caption)
    use.click().run()
    assert at.number_input(key="train__optimizer__learning_rate").value == suggested
    at.selectbox(key="search_budget").set_value("A number of trials").run()
    at.number_input(key="search_trials").set_value(1).run()
    at.button(key="search_submit").click().run()
    (search,) = list_searches()
    rate = search.space.get("optimizer.learning_rate")
    assert (rate.low, rate.high) == (
        pytest.approx(suggested / 10, rel=0.1),
        pytest.approx(suggested * 10, rel=0.1),
    )
    assert search.spec.optimizer.learning_rate == suggested
