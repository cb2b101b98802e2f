"""Runs: every training job with its progress; ``?job=<id>`` shows one run live, its scores and model."""

from __future__ import annotations

import contextlib
import json
import time

import streamlit as st
from streamlit.errors import StreamlitAPIException

from studio import jobs, tracking
from studio.app import charts, explain_view, ui
from studio.app import runs_view as rv
from studio.app.kinds import kind_can, kind_views
from studio.bundle import needs, python_snippet
from studio.core.errors import StudioError
from studio.core.tasks import task_info

ui.require_app()

REFRESH_SECONDS = 2
GALLERY_SIZE = 24
NOTICE = "runs_notice"


def page_link(page: str, label: str, **kwargs) -> None:
    """A link to another studio page (left out when this page runs on its own, outside the app)."""
    with contextlib.suppress(StreamlitAPIException):
        st.page_link(page, label=label, **kwargs)


def open_job(job_id: str | None) -> None:
    if job_id:
        st.query_params["job"] = job_id
    else:
        st.query_params.pop("job", None)
    st.rerun()


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "–"
    same_day = time.strftime("%Y%m%d", time.localtime(timestamp)) == time.strftime("%Y%m%d")
    return time.strftime("today %H:%M" if same_day else "%d %b %Y %H:%M", time.localtime(timestamp))


@st.cache_data(ttl=30, show_spinner=False)
def dataset_names() -> dict[str, str]:
    from studio.data import list_datasets

    return {info.id: info.name for info in list_datasets()}


# --------------------------------------------------------------------------- all runs
def job_row(job: jobs.Job) -> None:
    with st.container(border=True):
        name, progress, action = st.columns([3, 3, 1], vertical_alignment="center")
        badge = rv.verdict_badge(job)
        ensemble = rv.ensemble_label(job)
        name.markdown(
            f"**{ui.as_text(job.name)}**  \n{rv.status_label(job)}"
            + (f" · {badge}" if badge else "")
            + (f" · {ensemble}" if ensemble else "")
        )
        name.caption(
            f"{ui.as_text(dataset_names().get(job.dataset_id, job.dataset_id))} · created {when(job.created_at)}"
        )
        progress.progress(rv.progress_value(job), text=ui.as_text(rv.progress_caption(job)))
        if action.button("Open", key=f"open-{job.id}", help="Curves, scores, the model and its settings"):
            open_job(job.id)


def show_all_runs() -> None:
    st.title("Runs")
    st.caption("Every training run, newest first. Open a run to see its curves, its scores and its model.")
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        st.success(ui.as_text(notice))
    listed = jobs.list_jobs(limit=200)
    if not listed:
        st.info("No runs yet. Go to the **Train** page, pick a data set and start a run; it appears here.")
        page_link("pages/train.py", "Go to Train", icon=":material/model_training:")
        return
    active_ids = {job.id for job in listed if job.is_active}

    @st.fragment(run_every=REFRESH_SECONDS if active_ids else None)
    def job_list() -> None:
        current = jobs.list_jobs(limit=200)
        if {job.id for job in current if job.is_active} != active_ids:
            st.rerun()  # a run started or ended: redraw the page (and stop refreshing when none is active)
        counts: dict[str, int] = {}
        for job in current:
            counts[rv.status_label(job)] = counts.get(rv.status_label(job), 0) + 1
        st.caption(" · ".join(f"{label}: {count}" for label, count in counts.items()))
        for job in current:
            job_row(job)

    job_list()
    if active_ids:
        st.caption(f"This list refreshes every {REFRESH_SECONDS} seconds while runs are waiting or training.")


# --------------------------------------------------------------------------- one run
def live_section(job: jobs.Job) -> None:
    """Progress and curves; refreshed every few seconds while the job is queued or running."""
    shown_state = job.state

    # Faster while the first points are awaited, so the chart appears soon after pressing Train.
    waiting = job.state == jobs.QUEUED or not job.mlflow_run_id or not job.step
    refresh = (1 if waiting else REFRESH_SECONDS) if job.is_active else None

    @st.fragment(run_every=refresh)
    def live() -> None:
        try:
            current = jobs.get_job(job.id)
        except StudioError:
            st.rerun()  # removed meanwhile: the full page says so
        first_steps = not job.step and bool(current.step)
        if current.state != shown_state or current.mlflow_run_id != job.mlflow_run_id or first_steps:
            st.rerun()  # started, tracked, trained or ended: redraw the whole page for its new state
        if current.is_active:
            st.progress(rv.progress_value(current), text=ui.as_text(rv.progress_caption(current)))
        if (current.state == jobs.QUEUED and not current.mlflow_run_id) or not (
            current.mlflow_run_id or current.is_active
        ):
            return  # nothing was trained (yet); a run queued to resume shows its curves so far
        try:
            history, per_epoch = rv.job_history(current)
        except Exception as err:  # MLflow store briefly locked or unreachable: try again next refresh
            st.warning(f"The curves could not be read from MLflow just now ({type(err).__name__}).")
            return
        st.plotly_chart(
            charts.training_curves(history, current.spec.task, per_epoch),
            key="live-curves",
            config={"displaylogo": False},
        )

    live()


def actions_for_active(job: jobs.Job) -> None:
    if job.state == jobs.QUEUED:
        if st.button(
            "Remove from the queue", key="remove-queued", help="It has not started; nothing is lost"
        ):
            try:
                jobs.delete_job(job.id)
            except StudioError as err:
                ui.show_error(err)
                return
            st.session_state[NOTICE] = f"Run '{job.name}' was removed from the queue."
            open_job(None)
    elif job.state == jobs.RUNNING and not job.cancel_requested:
        with st.popover("Stop this run", help="Training ends within seconds; the curves so far are kept"):
            st.write(
                "Stop training now? Its progress is saved as it trains, so you can resume it later here."
            )
            if st.button("Yes, stop it", key="cancel-run", type="primary"):
                try:
                    jobs.cancel_job(job.id)
                except StudioError as err:
                    ui.show_error(err)
                    return
                st.rerun()


def resume_action(job: jobs.Job) -> None:
    """The Resume button of an interrupted or cancelled run that saved its progress."""
    if not job.can_resume:
        return
    if st.button(
        "Resume",
        key="resume-run",
        type="primary",
        icon=":material/play_arrow:",
        help="Continue from the last saved epoch, in the same MLflow run",
    ):
        try:
            jobs.resume_job(job.id)
        except StudioError as err:
            ui.show_error(err)
            return
        st.rerun()


def final_scores(job: jobs.Job) -> None:
    st.subheader("Final scores")
    cards = rv.test_metric_cards(job.outcome, job.spec.task)
    if not cards:
        st.info(rv.UNTESTED_TRIAL if job.search_id else "This run has no test scores.")
        return
    kept = task_info(job.spec.task).unit
    st.caption(f"Measured at the end on {kept} the model never saw while training: the honest estimate.")
    for column, (label, value, help_text) in zip(st.columns(len(cards)), cards, strict=True):
        column.metric(label, value, help=help_text)
    found = rv.job_verdict(job)
    if found is not None:
        show = {"guess": st.error, "barely": st.warning}.get(found.level)
        if show is not None:
            show(ui.as_text(found.sentence), icon=":material/block:" if found.level == "guess" else None)
        else:
            st.markdown(f":green[:material/check_circle:] {ui.as_text(found.sentence)}")
    for sentence in rv.ensemble_lines(job):
        st.info(ui.as_text(sentence), icon=":material/stacks:")
    kept_epoch = rv.kept_epoch_text(job)
    if kept_epoch:
        st.caption(ui.as_text(kept_epoch))
    smear = rv.smear_text(job)
    if smear:
        st.caption(ui.as_text(smear))
    gap = rv.validation_gap_text(job)
    if gap:
        st.warning(ui.as_text(gap), icon=":material/compare_arrows:")


def model_download(job: jobs.Job) -> None:
    st.subheader("Use the model")
    try:
        bundle = rv.bundle_file(job)
    except StudioError as err:
        ui.show_error(err)
        return
    name = rv.bundle_download_name(job)
    st.download_button(
        "Download the model (.zip)",
        data=bundle.read_bytes,
        file_name=name,
        mime="application/zip",
        key="download-model",
        type="primary",
        icon=":material/download:",
        on_click="ignore",
    )
    more = getattr(kind_views(task_info(job.spec.task).kind), "more_downloads", None)
    if more is not None:  # e.g. a language model's merged version
        more(job, bundle, name)
    page_link(
        "pages/predict.py",
        f"Predict new {task_info(job.spec.task).unit} with this model",
        icon=":material/online_prediction:",
        query_params={"job": job.id},
    )
    kind = task_info(job.spec.task).kind
    st.caption(f"To use it in your own Python code (needs only {needs(kind)} installed):")
    st.code(python_snippet(name, kind=kind), language="python", wrap_lines=True)


def mlflow_link(job: jobs.Job) -> None:
    base = ui.mlflow_ui_url()
    if not job.mlflow_run_id or not job.experiment_id:
        return
    if base:
        url = tracking.mlflow_ui_run_url(base, job.experiment_id, job.mlflow_run_id)
        st.link_button("Open this run in MLflow", url, key="mlflow-run", icon=":material/open_in_new:")
    else:
        st.caption(
            "This studio runs without the MLflow UI, so there is no link to this run there "
            "(`python -m studio serve` starts the UI unless it is given `--no-mlflow-ui`)."
        )


def failure_details(job: jobs.Job) -> None:
    st.error(ui.as_text(job.reason or "The run stopped without saying why."))
    st.markdown("**What to try**\n" + "\n".join(f"- {tip}" for tip in rv.failure_advice(job.reason)))
    technical_log(job)


def technical_log(job: jobs.Job) -> None:
    log = job.log_path
    if log.is_file():
        with st.expander("Technical log (for whoever maintains the studio)"):
            lines = log.read_text(errors="replace").splitlines()
            st.code("\n".join(lines[-80:]) or "(empty)", language=None)


def settings_section(job: jobs.Job) -> None:
    st.subheader("Settings used")
    spec = job.spec
    table = rv.spec_table(spec, dataset_names().get(spec.data.dataset_id))
    st.dataframe(table, hide_index=True, key="spec-table")
    with st.expander("All settings as JSON (for the command line and for support)"):
        st.json(json.loads(job.spec_json), expanded=True)
        st.download_button(
            "Download the settings (JSON)",
            data=job.spec_json,
            file_name=f"{rv.bundle_download_name(job).removesuffix('-model.zip')}-spec.json",
            mime="application/json",
            key="download-spec",
            on_click="ignore",
        )


def show_run(job_id: str) -> None:
    if st.button("← All runs", key="back-to-runs", type="tertiary"):
        open_job(None)
    try:
        job = jobs.get_job(job_id)
        spec = job.spec
    except StudioError as err:
        ui.show_error(err)
        st.info("It may have been removed. Go back to all runs and open another one.")
        return
    st.title(ui.as_text(job.name), anchor=False)
    dataset = dataset_names().get(job.dataset_id, job.dataset_id)
    st.caption(
        f"{rv.status_label(job)} · {rv.what_it_learns(spec)} from data set **{ui.as_text(dataset)}** · "
        f"created {when(job.created_at)} · job {job.id}"
        + (f" · trained on {rv.device_words(job.device)}" if job.device and job.state != jobs.QUEUED else "")
    )
    if job.state == jobs.FAILED:
        failure_details(job)
    elif job.state == jobs.INTERRUPTED:
        st.warning(ui.as_text(rv.state_message(job)), icon=":material/pause_circle:")
        st.caption(ui.as_text(job.reason or "It stopped without saying why."))
        technical_log(job)
    elif job.state == jobs.CANCELLED or job.is_active:
        st.info(ui.as_text(rv.state_message(job)))
    elif rv.finished_with_a_warning(job):  # an earlier epoch kept, or no better than a guess
        st.warning(ui.as_text(rv.state_message(job)), icon=":material/warning:")
    else:
        st.success(ui.as_text(rv.state_message(job)))
    if job.note:  # e.g. resumed, or went on with a smaller batch after running out of memory
        st.info(ui.as_text(job.note), icon=":material/info:")
    actions_for_active(job)
    resume_action(job)
    live_section(job)
    if job.state == jobs.SUCCEEDED:
        final_scores(job)
        kind_views(task_info(spec.task).kind).run_results(job)
        model_download(job)
        if kind_can(task_info(spec.task).kind, "compress_model"):
            explain_view.small_version(job, "accuracy" if task_info(spec.task).classes else "R²")
    mlflow_link(job)
    settings_section(job)


job_param = st.query_params.get("job")
if job_param:
    show_run(job_param)
    ui.run_page_shown(job_param)  # (a double click's second click on Train comes back here: pages/train.py)
else:
    show_all_runs()
