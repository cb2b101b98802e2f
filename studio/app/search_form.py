"""The Train page's "Find the best settings" section: the time budget (or a number of trials), the score
to optimise, an optional narrowing of the search space, and the button that starts a search around the
settings in the form. One press starts one search; the page then opens the search page.
"""

from __future__ import annotations

import contextlib
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

from studio.app import charts, ui
from studio.core.errors import StudioError

BUDGETS = ("5 min", "15 min", "1 h", "Custom time", "A number of trials")
state = st.session_state


def press_search() -> None:
    state["search_pressed"] = True
    state.setdefault("search_token", ui.new_token())


def find_best_settings(spec: Any, blocked: bool) -> None:
    """Beside Train: search for better settings around ``spec`` (off while the form has a problem)."""
    from studio.search import control

    st.markdown("**Or let the studio find the best settings**")
    st.caption(
        "It trains many models with different settings (learning rate, network size, dropout, batch "
        "size, optimiser …) within the time you give it, stops the hopeless ones early, and keeps the "
        "one with the best validation score. Each try is a run of its own; the first uses the settings "
        "above."
    )
    budget_col, amount_col, metric_col = st.columns(3)
    budget = budget_col.selectbox("Time budget", BUDGETS, key="search_budget")
    seconds, trials = control.BUDGET_CHOICES.get(budget), None
    if budget == "Custom time":
        seconds = 60 * amount_col.number_input(
            "Minutes", min_value=1, max_value=1440, value=30, key="search_minutes"
        )
    elif budget == "A number of trials":
        trials = int(
            amount_col.number_input("Trials", min_value=1, max_value=500, value=20, key="search_trials")
        )
    narrowing_text = ""
    if spec is not None:
        metrics = list(control.metrics_for(spec.task))
        metric = metric_col.selectbox(
            "Score to optimise",
            metrics,
            index=metrics.index(control.default_metric(spec.task)),
            format_func=charts.metric_label,
            key="search_metric",
        )
    centre = learning_rate_finder(spec) if spec is not None else None
    if spec is not None and st.toggle("Narrow the search space", key="search_space_open"):
        narrowing_text = st.text_area(
            "Search space: one setting per line, a range {low, high}, a list of choices, or one value",
            value=_space_text(spec, centre),
            height=220,
            key=f"search_space_{spec.task}_{spec.architecture.name}_{centre}",
        )
    pressed = bool(state.get("search_pressed"))
    st.button(
        "Find the best settings",
        key="search_submit",
        icon=":material/travel_explore:",
        disabled=blocked or spec is None or pressed,
        on_click=press_search,
    )
    if not pressed:
        state.pop("search_token", None)
        return
    state.pop("search_pressed", None)
    if spec is None or blocked:
        return
    with ui.guard():
        from studio.search.space import parse_narrowing

        search = control.start_search(
            spec,
            budget_seconds=seconds,
            max_trials=trials,
            metric=metric,
            narrowing=parse_narrowing(narrowing_text),
            token=state["search_token"],
            learning_rate_centre=centre,
        )
        state["search_started"] = search.id
        go_to_search(search.id)


def learning_rate_finder(spec: Any) -> float | None:
    """ "Suggest a learning rate": a short range test on these data and this network, its curve, and a
    button that puts the suggestion in the form. Returns the suggestion for this data set and target,
    which also centres the search's learning-rate range."""
    key = (spec.data.dataset_id, spec.data.target, spec.architecture.name)
    if st.button("Suggest a learning rate", key="search_lr_find", icon=":material/insights:"):
        from studio.search.lr_find import suggest_learning_rate

        with ui.guard(), st.spinner("Trying learning rates from 0.000001 to 1 on your data …"):
            state["search_lr_finding"] = (key, suggest_learning_rate(spec))
    found = state.get("search_lr_finding")
    if not found or found[0] != key:
        return None
    finding = found[1]
    from studio.app.search_view import learning_rate_figure

    st.plotly_chart(
        learning_rate_figure(finding.learning_rates, finding.losses, finding.suggestion),
        key="search_lr_chart",
        width="stretch",
    )
    if finding.suggestion is None:
        st.caption(
            f"{finding.note or 'The loss did not fall clearly.'} No suggestion: keep your learning rate."
        )
        return None
    from studio.app import forms

    st.button(
        f"Use {finding.suggestion:.2g} as the learning rate",
        key="search_lr_use",
        on_click=_set_learning_rate,
        args=(forms.field_key("optimizer.learning_rate", spec.task), float(f"{finding.suggestion:.2g}")),
    )
    st.caption(
        f"A search started now tries learning rates from {finding.suggestion / 10:.2g} to "
        f"{finding.suggestion * 10:.2g} (a tenth to ten times the suggestion)."
    )
    return finding.suggestion


def _set_learning_rate(key: str, value: float) -> None:
    state[key] = value


def _space_text(spec: Any, centre: float | None) -> str:
    from studio.search.control import plan_space

    try:
        return plan_space(spec, learning_rate_centre=centre).narrowing_text()
    except StudioError:
        return ""


def go_to_search(search_id: str) -> None:
    with contextlib.suppress(StreamlitAPIException):
        if ui.page_exists("pages/search.py"):
            st.switch_page("pages/search.py", query_params={"search": search_id})
    st.success(
        f"The search started (`{search_id}`). Follow it on the **Search** page, or in a terminal with "
        f"`python -m studio jobs show {search_id}`.",
        icon=":material/travel_explore:",
    )
