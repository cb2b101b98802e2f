"""Train page: pick a data set and what to predict, adjust the settings the spec offers, press Train."""

import streamlit as st

from studio import forms, jobs, ui
from studio.datasets import suggest_task
from studio.errors import SpecError
from studio.spec import ARCHITECTURES, PRESET_HELP, PRESETS, TASKS, architectures_for

TASK_LABELS = {
    "classification": "Classification (predict a category)",
    "regression": "Regression (predict a number)",
}
state = st.session_state

ui.require_app()


def forget(*keys: str) -> None:
    """Let dependent choices start again from their suggestion (a new data set, a new target)."""
    for key in keys:
        state.pop(key, None)


def apply_preset() -> None:
    for path, value in forms.preset_values(state["train_preset"]).items():
        state[forms.field_key(path)] = value


st.title("Train")
st.caption("Step 2 of 3: choose what to predict, check the settings, press **Train**.")

infos = ui.list_datasets()
if not infos:
    st.info(
        "There is no data set yet. Add one on the **Data** page first: a built-in sample is one click.",
        icon=":material/arrow_back:",
    )
    ui.page_link("pages/data.py", "Go to Data", icon=":material/table_chart:")
    st.stop()

by_id = {info.id: info for info in infos}
if state.get("current_dataset") != state.get("train_dataset"):
    forget("train_dataset", "train_target", "train_task")  # the data set was chosen on the Data page
with ui.guard():
    st.subheader("What to learn")
    left, right = st.columns(2, gap="large")
    with left:
        dataset_id = ui.select(
            "Data set",
            list(by_id),
            "train_dataset",
            state.get("current_dataset"),
            format_func=lambda key: ui.dataset_label(by_id[key]),
            help="The table to learn from. Add more on the Data page.",
            on_change=forget,
            args=("train_target", "train_task"),
        )
        state["current_dataset"] = dataset_id
        profile = ui.load_profile(dataset_id)
        columns = [column["name"] for column in profile["columns"]]
        target = ui.select(
            "Target column",
            columns,
            "train_target",
            profile["suggested_target"],
            help="The column the model learns to predict. The studio suggests one; pick another if you like.",
            on_change=forget,
            args=("train_task",),
        )
    with right:
        suggested_task = suggest_task(profile, target)
        task = ui.select(
            "Task",
            list(TASKS),
            "train_task",
            suggested_task or "classification",
            format_func=TASK_LABELS.get,
            help="Classification predicts a category (e.g. a grape variety); regression predicts a number "
            "(e.g. a price). The studio suggests one from the target column.",
        )
        architecture = ui.select(
            "Architecture",
            architectures_for(task),
            "train_architecture",
            "mlp",
            format_func=lambda name: ARCHITECTURES[name].title,
            help="The kind of model. "
            + " ".join(f"{a.title}: {a.description}" for a in ARCHITECTURES.values()),
        )
        st.caption(ARCHITECTURES[architecture].description)
    if suggested_task is None:
        st.warning(
            f"'{target}' has only one value (or holds dates), so there is nothing to learn from it. "
            "Pick another target column.",
            icon=":material/warning:",
        )

    st.subheader("Settings")
    preset = st.radio(
        "Preset",
        list(PRESETS),
        index=list(PRESETS).index("balanced"),
        key="train_preset",
        horizontal=True,
        format_func=str.capitalize,
        on_change=apply_preset,
        help=" ".join(f"{name.capitalize()}: {text}" for name, text in PRESET_HELP.items()),
        persist_state="session",
    )
    st.caption(PRESET_HELP[preset] + " Point at the **?** beside any setting to read what it does.")

    choices = {
        "early_stopping.metric": forms.metric_choices(task),
        "data.features": [name for name in columns if name != target],
        "training.device": forms.device_choices(),
    }
    fields = forms.form_fields(architecture, choices, task)
    values = {}
    main = [f for f in fields if not f.advanced]
    for field in (f for f in main if f.section == ""):
        values[field.path] = ui.render_field(field)
    sections = [name for name in forms.SECTION_TITLES if name and any(f.section == name for f in main)]
    for section, column in zip(sections, st.columns(len(sections), gap="medium"), strict=True):
        with column:
            st.markdown(f"**{forms.SECTION_TITLES[section]}**")
            for field in (f for f in main if f.section == section):
                values[field.path] = ui.render_field(field)
    with st.expander("Advanced settings (optional: the defaults suit most tables)", icon=":material/tune:"):
        for section, title in forms.SECTION_TITLES.items():
            section_fields = [f for f in fields if f.advanced and f.section == section]
            if not section_fields:
                continue
            st.markdown(f"**{title}**")
            advanced_columns = st.columns(3)
            for index, field in enumerate(section_fields):
                with advanced_columns[index % 3]:
                    values[field.path] = ui.render_field(field)

    st.subheader("Before you start")
    spec, problem = None, None
    try:
        spec = forms.spec_from_values(
            dataset_id=dataset_id, target=target, task=task, architecture=architecture, values=values
        )
    except SpecError as err:
        problem = err
    data_warnings = ui.target_warnings(dataset_id, target, task)
    if data_warnings:
        with st.expander(
            f"About the data ({len(data_warnings)} notes)", expanded=True, icon=":material/info:"
        ):
            ui.show_warnings(data_warnings)
    if spec is not None:
        rows = forms.usable_rows(profile, target)
        for advice in forms.risky_values(spec, rows):
            st.warning(advice, icon=":material/warning:")
        device = forms.device_text(spec.training.device)
        n_features = len(spec.data.features) if spec.data.features else len(columns) - 1
        estimate = forms.estimate_time(spec, rows, n_features, on_gpu=device.startswith("GPU"))
        st.markdown(f"**Where it trains:** {device}  \n**How long:** {estimate.text}")
    else:
        ui.show_error(problem)

    st.caption(
        "Training runs in the background: you can close the browser or train more models meanwhile. "
        "The Runs page shows its progress live."
    )
    if (
        st.button("Train", key="train_submit", type="primary", icon=":material/play_arrow:")
        and spec is not None
    ):
        job = jobs.submit_job(spec)
        ui.go_to_run(job.id)
