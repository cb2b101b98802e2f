"""Search page: one search, live. Its best validation score over time against the spec's own settings,
one dot per trial, each trial's settings against its score, which settings mattered most, the trials
with links to their runs, and the chosen model (download, Predict) once a trial has finished.

Trials are ordinary runs: each also appears on the Runs page and in MLflow (as a child of the search's
run). Searches start from the Train page ("Find the best settings") or `python -m studio search`.
"""

import contextlib

import streamlit as st
from streamlit.errors import StreamlitAPIException

from studio.app import search_view as sv
from studio.app import ui
from studio.search import control, records

REFRESH_SECONDS = 2
MORE_SECONDS = 600
state = st.session_state

ui.require_app()


def pick_search() -> str | None:
    """The search in the address (``?search=ID``), else a choice among the newest."""
    searches = records.list_searches(limit=50)
    wanted = st.query_params.get("search")
    if wanted and any(s.id == wanted for s in searches):
        return wanted
    if not searches:
        st.info(
            "No search yet. On the **Train** page, pick a data set and press **Find the best settings**: "
            "the studio then tries many settings within the time you give it and keeps the best model."
        )
        ui.page_link("pages/train.py", "Go to Train", icon=":material/model_training:")
        return None
    labels = {s.id: f"{s.name} · {s.state}" for s in searches}
    chosen = st.selectbox(
        "Search", list(labels), format_func=lambda sid: ui.as_text(labels[sid]), key="search_pick"
    )
    st.query_params["search"] = chosen
    return chosen


def cancel() -> None:
    with ui.guard():
        control.cancel_search(state["search_open"])


def more_time() -> None:
    with ui.guard():
        control.resume_search(state["search_open"], more_seconds=MORE_SECONDS)


def actions(search: records.Search) -> None:
    left, right = st.columns(2)
    if search.is_active and not search.cancel_requested:
        left.button(
            "Cancel the search",
            key="search_cancel",
            icon=":material/stop:",
            on_click=cancel,
            help="Stops every trial; the best model so far stays the search's result.",
        )
    if not search.cancel_requested:
        right.button(
            "Give it 10 more minutes",
            key="search_more",
            icon=":material/more_time:",
            on_click=more_time,
            help="Goes on with the same study: it keeps what it learnt from the trials so far.",
        )


def chosen_model(search: records.Search, rows: list) -> None:
    st.subheader("The chosen model")
    if not search.best_job_id:
        st.caption("The best trial's model appears here as soon as a trial has finished.")
        return
    best = next((r for r in rows if r.job_id == search.best_job_id), None)
    test_key = "test/" + search.metric.split("/", 1)[-1]
    st.markdown(ui.as_text(sv.chosen_text(search, rows)))
    if best and test_key in best.test_metrics:
        st.markdown(f"Its test score: **{best.test_metrics[test_key]:.4g}** ({test_key}), measured once.")
        found = sv.chosen_verdict(search, rows)
        if found is not None:
            (st.warning if found.worrying else st.caption)(ui.as_text(found.sentence))
    elif search.is_active:
        st.caption("It is tested on the test rows once, when the search ends.")
    st.caption("Its run page has the model to download, Predict and the Python snippet, as for any run.")
    with contextlib.suppress(StreamlitAPIException):  # (no Runs page when this page runs on its own)
        st.page_link(
            "pages/runs.py",
            label="Open the chosen model's run",
            icon=":material/monitoring:",
            query_params={"job": search.best_job_id},
        )


def search_view(search_id: str) -> None:
    search = records.get_search(search_id)
    state["search_open"] = search_id
    if search.is_active:
        control.ensure_driver(search_id)  # a search whose driver stopped (a restart) goes on
    st.subheader(ui.as_text(search.name))
    st.caption(f"Optimises the {sv.score_words(search)}. {sv.HONEST_SELECTION} {sv.folds_words(search)}")

    @st.fragment(run_every=REFRESH_SECONDS if search.is_active else None)
    def live() -> None:
        now = records.get_search(search_id)
        if now.state != search.state or now.cancel_requested != search.cancel_requested:
            st.rerun()
        rows = sv.trial_rows(now)
        st.markdown(f"**{ui.as_text(sv.status_text(now, rows))}**")
        st.plotly_chart(sv.best_so_far_figure(now, rows), key="search_best", width="stretch")
        importances = sv.importance_sentences(now, rows)
        if importances:
            st.markdown("**What mattered:** " + " ".join(ui.as_text(s) for s in importances))
        with st.expander("Each trial's settings against its score", expanded=False):
            st.plotly_chart(sv.settings_figure(now, rows), key="search_settings", width="stretch")
        st.dataframe(
            sv.trials_frame(now, rows),
            key="search_trials",
            hide_index=True,
            column_config={"Run": st.column_config.LinkColumn("Run", display_text="open")},
        )
        link = sv.compare_link(now, rows, ui.mlflow_ui_url())
        if link:
            st.link_button("Compare the trials in MLflow", link, icon=":material/open_in_new:")
        chosen_model(now, rows)

    live()
    actions(search)
    if search.reason and not search.is_active:
        st.caption(ui.as_text(search.reason))


st.title("Search")
st.caption("Finds the best settings for a model by trying many, within a time budget.")
with ui.guard():
    picked = pick_search()
    if picked:
        search_view(picked)
