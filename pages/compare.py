"""Compare: runs of one data set side by side: curves, a table with the best values marked, and how the
settings relate to the score."""

from __future__ import annotations

import streamlit as st

from studio import tracking
from studio.app import charts, ui
from studio.app import runs_view as rv
from studio.core.errors import StudioError
from studio.core.spec import main_metric
from studio.core.text import counted

ui.require_app()

DEFAULT_RUNS = 5
_STATUS = {"FINISHED": "", "RUNNING": " (still training)", "FAILED": " (failed)", "KILLED": " (stopped)"}


def run_groups() -> list | None:
    try:
        return rv.datasets_with_runs()
    except StudioError as err:
        ui.show_error(err)
    except Exception as err:  # the MLflow store is locked or unreachable: say so plainly
        st.error(f"The runs could not be read from MLflow just now ({type(err).__name__}); reload the page.")
    return None


def curves_section(selected: list, labels: dict[str, str], task: str) -> None:
    st.subheader("Curves")
    metrics = rv.curve_metrics(selected)
    if not metrics:
        st.info("These runs have no curves yet.")
        return
    main = main_metric(task)
    metric = st.selectbox(
        "Metric",
        metrics,
        index=metrics.index(main) if main in metrics else 0,
        format_func=lambda key: charts.sentence(charts.metric_label(key)),
        key="compare-metric",
        help="Validation scores are measured after every epoch on rows the model does not train on.",
    )
    histories, per_epoch = rv.compare_histories(selected, metric, labels)
    st.plotly_chart(
        charts.compare_curves(histories, metric, per_epoch),
        key="compare-curves",
        config={"displaylogo": False},
    )


def table_section(selected: list, labels: dict[str, str]) -> None:
    st.subheader("Scores and settings")
    table = rv.compare_table(selected, labels)
    st.caption(
        f"{rv.BEST_MARK} marks the best value of each score (highest accuracy, lowest loss, …). "
        "Only the settings that differ between these runs are shown; test scores are the honest ones."
    )
    help_texts = table.column_help()
    st.dataframe(
        table.styled(),
        key="compare-table",
        column_config={column: st.column_config.Column(help=text) for column, text in help_texts.items()},
    )
    for label, found in rv.worrying_runs(selected, labels):
        st.warning(f"**{ui.as_text(label)}**: {ui.as_text(found.sentence)}", icon=":material/block:")


def settings_section(selected: list, labels: dict[str, str], task: str) -> None:
    st.subheader("Settings against the score")
    metric = main_metric(task)
    frame = rv.parallel_frame(selected, metric, labels)
    params = [column for column in frame.columns if column != metric]
    if not params:
        st.info("These runs used the same settings, so there is nothing to relate to the score.")
        return
    st.caption(
        f"Each line is a run, from its settings on the left to its {charts.metric_label(metric)} on the right; "
        "brighter lines scored higher. Drag along an axis to highlight runs."
    )
    figure = charts.parallel_coordinates(
        frame, params, metric, labels={param: rv.param_label(param) for param in params}
    )
    st.plotly_chart(figure, key="compare-parallel", config={"displaylogo": False})


def mlflow_link(selected: list) -> None:
    base = ui.mlflow_ui_url()
    if base:
        url = tracking.mlflow_ui_compare_url(
            base, selected[0].experiment_id, [run.run_id for run in selected]
        )
        st.link_button("Open these runs in MLflow", url, key="compare-mlflow", icon=":material/open_in_new:")
    else:
        st.caption(
            "This studio runs without the MLflow UI, so there is no link to this comparison there "
            "(`python -m studio serve` starts the UI unless it is given `--no-mlflow-ui`)."
        )


st.title("Compare runs")
st.caption(
    "Put runs of the same data set side by side: their curves, scores and settings, best values marked."
)
groups = run_groups()
if groups is not None and not groups:
    st.info("Nothing to compare yet. Train at least two runs on the same data set on the **Train** page.")
elif groups:
    by_dataset = {runs[0].dataset_id: (info, runs) for info, runs in groups}
    dataset_id = st.selectbox(
        "Data set",
        list(by_dataset),
        format_func=lambda key: (
            f"{getattr(by_dataset[key][0], 'name', key)} ({counted(len(by_dataset[key][1]), 'run')})"
        ),
        key="compare-dataset",
    )
    runs = by_dataset[dataset_id][1]
    by_id = {run.run_id: run for run in runs}
    labels = rv.run_labels(runs)
    chosen = st.multiselect(
        "Runs to compare",
        list(by_id),
        default=[run.run_id for run in runs if run.status == "FINISHED"][:DEFAULT_RUNS],
        format_func=lambda run_id: labels[run_id] + _STATUS.get(by_id[run_id].status, ""),
        key=f"compare-runs-{dataset_id}",
        help="Newest first. The latest finished runs are chosen to start with.",
    )
    selected = [by_id[run_id] for run_id in chosen]
    if not selected:
        st.info("Choose the runs to compare above.")
    else:
        if len(selected) == 1:
            st.info("Choose at least one more run to see which does better.")
        task = rv.runs_task(selected)
        if len({run.task for run in selected}) > 1:
            st.warning("These runs predict different kinds of things; their scores do not compare directly.")
        mlflow_link(selected)
        curves_section(selected, labels, task)
        table_section(selected, labels)
        settings_section(selected, labels, task)
