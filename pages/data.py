"""Data page: add a table (upload or built-in sample), look at what the studio found in it, delete it."""

import streamlit as st

from studio import datasets, ui

SAMPLE_TITLES = {"wine": "wine", "breast_cancer": "breast cancer", "diabetes": "diabetes"}
state = st.session_state

ui.require_app()


def remember(info: datasets.DatasetInfo, message: str) -> None:
    """Show the new data set once the page reloads."""
    ui.forget_datasets()
    state["data_selected"] = info.id
    state["data_notice"] = message
    st.rerun()


st.title("Data")
st.caption("Step 1 of 3: add a table, check what the studio found in it, then train a model on it.")

infos = ui.list_datasets()
if not infos:
    st.info(
        "**New here? Start with a sample.** Press **Add sample: wine** below: a small real table "
        "(178 wines, 13 measurements) that trains in under a minute. Or upload your own CSV file: one row "
        "per example, one column per measurement, and one column with the answer the model should learn.",
        icon=":material/waving_hand:",
    )
if notice := state.pop("data_notice", None):
    st.success(notice, icon=":material/check_circle:")

limit_mb = ui.upload_limit_mb()
with st.expander("Add a data set", expanded=not infos, icon=":material/add:"):
    upload_column, sample_column = st.columns([3, 2], gap="large")
    with upload_column:
        uploaded = st.file_uploader(
            f"Upload a CSV file (at most {limit_mb} MB)",
            type=["csv", "tsv", "txt", "parquet"],
            key="data_upload",
            help="A table saved as CSV (comma, semicolon or tab separated) with the column names in the "
            "first line. Spreadsheet programs save this with 'Save as… CSV'.",
        )
        name = st.text_input(
            "Name (optional)",
            key="data_upload_name",
            placeholder=uploaded.name.rsplit(".", 1)[0] if uploaded else "the file name",
        )
        if st.button("Add this file", key="data_add_upload", type="primary", disabled=uploaded is None):
            with ui.guard(), st.spinner("Reading and checking the file…"):
                added = datasets.add_csv(
                    uploaded.getvalue(),
                    name=name.strip() or None,
                    filename=uploaded.name,
                    max_bytes=limit_mb * 1024 * 1024,
                )
                remember(added, f"Added '{added.name}': {added.n_rows:,} rows, {added.n_cols:,} columns.")
    with sample_column:
        st.markdown("**Or start with a built-in sample**")
        for sample, description in datasets.SAMPLES.items():
            label = f"Add sample: {SAMPLE_TITLES.get(sample, sample)}"
            first_step = not infos and sample == "wine"
            if st.button(
                label, key=f"data_add_sample_{sample}", type="primary" if first_step else "secondary"
            ):
                with ui.guard(), st.spinner("Adding the sample…"):
                    added = datasets.add_sample(sample)
                    remember(added, f"Added the {SAMPLE_TITLES.get(sample, sample)} sample.")
            st.caption(description)

if not infos:
    st.stop()

st.subheader("Your data sets")
st.dataframe(ui.datasets_frame(infos), hide_index=True, key="data_list")

ids = [info.id for info in infos]
by_id = {info.id: info for info in infos}
if state.get("data_selected") not in ids:
    state["data_selected"] = state.get("current_dataset") if state.get("current_dataset") in ids else ids[0]
selected = st.selectbox(
    "Look at", ids, format_func=lambda dataset_id: ui.dataset_label(by_id[dataset_id]), key="data_selected"
)
info = by_id[selected]
state["current_dataset"] = info.id  # the Train page starts with the data set looked at here

with ui.guard():
    profile = ui.load_profile(info.id)
    table = ui.load_table(info.id)

    st.header(info.name)
    rows, columns, repeats, target = st.columns(4)
    rows.metric("Rows", f"{profile['n_rows']:,}")
    columns.metric("Columns", f"{profile['n_cols']:,}")
    repeats.metric("Repeated rows", f"{profile['duplicate_rows']:,}")
    target.metric("Suggested target", profile["suggested_target"] or "none")
    if profile["suggested_target"] and profile["suggested_task"]:
        task_words = "a category" if profile["suggested_task"] == "classification" else "a number"
        st.markdown(
            f"The studio suggests learning to predict **{profile['suggested_target']}** "
            f"({profile['suggested_task']}: the answer is {task_words}). You can pick another column on the "
            "Train page."
        )

    st.subheader("What the studio noticed")
    if profile["warnings"]:
        ui.show_warnings(profile["warnings"])
    else:
        st.success(
            "Nothing to worry about: no empty, constant, id-like or give-away columns.",
            icon=":material/check:",
        )

    columns_tab, preview_tab = st.tabs(["Columns", "First rows"])
    with columns_tab:
        st.dataframe(ui.profile_frame(profile), hide_index=True, key="data_profile")
    with preview_tab:
        st.caption(f"The first {min(len(table), 100)} of {len(table):,} rows.")
        st.dataframe(table.head(100), key="data_preview")

    st.info(
        "**What to do next:** open **Train**, where this data set and its suggested target are already "
        "picked, and press **Train**.",
        icon=":material/arrow_forward:",
    )
    ui.page_link("pages/train.py", "Go to Train", icon=":material/model_training:")

    with st.expander("Delete this data set", icon=":material/delete:"):
        st.write(
            f"This removes '{info.name}' from the studio. Runs already trained on it keep their results "
            "and models."
        )
        sure = st.checkbox(f"Yes, delete '{info.name}'", key=f"data_delete_confirm_{info.id}")
        if st.button("Delete data set", key="data_delete", disabled=not sure):
            datasets.delete_dataset(info.id)
            ui.forget_datasets()
            state["data_notice"] = f"Deleted '{info.name}'."
            st.rerun()
