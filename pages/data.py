"""Data page: add a table or a zip of pictures (upload or built-in sample), look at what the studio
found in it, delete it."""

import pandas as pd
import streamlit as st

from studio import data as datasets
from studio.app import charts, ui
from studio.core.tasks import task_info
from studio.core.text import counted
from studio.jobs import delete_dataset

SAMPLE_TITLES = {
    "wine": "wine",
    "breast_cancer": "breast cancer",
    "diabetes": "diabetes",
    "digits": "digits (pictures)",
}
state = st.session_state

ui.require_app()


def remember(info: datasets.DatasetInfo, message: str) -> None:
    """Show the new data set once the page reloads."""
    ui.forget_datasets()
    state["data_selected"] = info.id
    state["data_notice"] = message
    st.rerun()


def show_table(info: datasets.DatasetInfo, profile: dict) -> None:
    table = ui.load_table(info.id)
    if ui.reading_section(info, table, profile):  # a kind's own reading: language-model examples
        first_rows(table)
        return
    rows, columns, repeats, target = st.columns(4)
    rows.metric("Rows", f"{profile['n_rows']:,}")
    columns.metric("Columns", f"{profile['n_cols']:,}")
    repeats.metric("Repeated rows", f"{profile['duplicate_rows']:,}")
    target.metric("Suggested target", ui.as_text(profile["suggested_target"] or "none"))
    if profile["suggested_target"] and profile["suggested_task"]:
        task_words = "a category" if task_info(profile["suggested_task"]).classes else "a number"
        st.markdown(
            f"The studio suggests learning to predict **{ui.as_text(profile['suggested_target'])}** "
            f"({profile['suggested_task']}: the answer is {task_words}). You can pick another column on the "
            "Train page."
        )
    elif not profile["suggested_target"]:
        st.markdown(
            "The studio cannot tell which column you want to predict: none is named like an answer, and the "
            "last column holds dates, IDs, free text or a single value. Pick it on the Train page."
        )

    st.subheader("What the studio noticed")
    if profile["warnings"]:
        ui.show_warnings(profile["warnings"])
    else:
        st.success(
            "Nothing to worry about: no empty, constant, id-like or give-away columns.",
            icon=":material/check:",
        )

    readings = datasets.column_readings(profile)
    if readings:
        st.subheader("How the model reads some columns")
        st.markdown("\n".join(f"- {ui.as_text(reading['message'])}" for reading in readings))

    for column in profile["columns"]:
        if column["kind"] == "text" and "words_mean" in column.get("stats", {}):
            text_column(column, table)

    columns_tab, preview_tab = st.tabs(["Columns", "First rows"])
    with columns_tab:
        frame = ui.profile_frame(profile)
        st.dataframe(frame, hide_index=True, key="data_profile")
        explained = ui.type_explanations(frame)
        if explained:
            st.caption(" ".join(explained))
    with preview_tab:
        first_rows(table)


def first_rows(table: pd.DataFrame) -> None:
    st.caption(f"The first {min(len(table), 100)} of {counted(len(table), 'row')}.")
    st.dataframe(table.head(100), key="data_preview")


def text_column(column: dict, table: pd.DataFrame) -> None:
    """A free-text column: how long its texts are, its most frequent words, a few of its rows."""
    name, stats = column["name"], column["stats"]
    st.subheader(f"Text: {ui.as_text(name)}")
    read = f" (in the first {stats['read_rows']:,} texts)" if stats.get("read_rows_of") else ""
    st.markdown(
        f"{ui.as_text(datasets.text_description(name, column))}{read}; the longest has "
        f"{stats['words_max']:,} words and {stats['empty']:,} are empty. It is read as text by the text "
        "networks (task *Text classification* or *Text regression* on the Train page)."
    )
    lengths, words, examples = st.columns([3, 2, 3], gap="large")
    histogram = stats.get("length_histogram") or {"edges": [], "counts": []}
    lengths.plotly_chart(
        charts.text_lengths_figure(histogram["edges"], histogram["counts"]),
        key=f"data_text_lengths_{name}",
        config={"displaylogo": False},
    )
    words.dataframe(
        pd.DataFrame(stats.get("top_words", []), columns=["Word", "Times"]),
        hide_index=True,
        key=f"data_text_words_{name}",
    )
    examples.dataframe(
        table[[name]].dropna().head(5).rename(columns={name: "A few texts"}),
        hide_index=True,
        key=f"data_text_examples_{name}",
    )


def show_pictures(info: datasets.DatasetInfo, profile: dict) -> None:
    skipped = ui.skipped_frame(profile)
    pictures, classes, size, left_out = st.columns(4)
    pictures.metric("Pictures", f"{profile['n_images']:,}")
    classes.metric("Classes", f"{profile['n_classes']:,}")
    size.metric(
        "Usual size",
        f"{profile['sizes']['width']['median']:,.0f} × {profile['sizes']['height']['median']:,.0f} px",
        help="The median width × height of the pictures.",
    )
    left_out.metric(
        "Files left out", f"{len(skipped):,}", help="Files of the zip that are not used; listed below."
    )
    st.markdown(
        f"The studio learns to tell the **{profile['n_classes']} classes** apart (image classification): the "
        f"folder names of the zip. Picture sizes: {ui.size_text(profile)}; each is resized for training."
    )

    st.subheader("What the studio noticed")
    if profile["warnings"]:
        ui.show_warnings(profile["warnings"])
    else:
        st.success(
            "Nothing to worry about: every class has enough pictures, none is much bigger than the others, "
            "and every file of the zip was a usable picture.",
            icon=":material/check:",
        )

    samples_tab, classes_tab, skipped_tab = st.tabs(
        ["Samples per class", "Pictures per class", f"Files left out ({len(skipped):,})"]
    )
    with samples_tab:
        st.caption("The first pictures of each class, as they were uploaded.")
        for name, count, thumbnails in ui.sample_grid(info.id):
            st.markdown(f"**{ui.as_text(name)}** · {counted(count, 'picture')}")
            if thumbnails:
                st.image(thumbnails, width=96)
    with classes_tab:
        left, right = st.columns([2, 3], gap="large")
        class_table = ui.classes_frame(profile)
        left.dataframe(class_table, hide_index=True, key="data_classes")
        right.plotly_chart(
            charts.class_counts_figure(list(class_table["Class"]), list(class_table["Pictures"])),
            key="data_classes_chart",
            config={"displaylogo": False},
        )
    with skipped_tab:
        if skipped.empty:
            st.caption("Nothing was left out: every file of the zip is a picture of the data set.")
        else:
            st.caption("These files of the zip are not used for training, each with the reason.")
            st.dataframe(skipped, hide_index=True, key="data_skipped")


def welcome() -> None:
    st.info(
        "**New here? Start with a sample.** Press **Add sample: wine** below: a small real table "
        "(178 wines, 13 measurements) that trains in under a minute. Or upload your own CSV file: one row "
        "per example, one column per measurement, and one column with the answer the model should learn. "
        "For pictures, upload a zip with one folder per class (e.g. `cats/…`, `dogs/…`), or try the "
        "**digits** sample: 1,797 small pictures of handwritten digits.",
        icon=":material/waving_hand:",
    )


def add_data_set(first_time: bool) -> None:
    """Upload a file (a table or a zip of pictures), or add a built-in sample."""
    limit_mb = ui.upload_limit_mb()
    with st.expander("Add a data set", expanded=first_time, icon=":material/add:"):
        upload_column, sample_column = st.columns([3, 2], gap="large")
        with upload_column:
            upload(limit_mb)
        with sample_column:
            samples(first_time)


def upload(limit_mb: int) -> None:
    uploaded = st.file_uploader(
        f"Upload a CSV file or a zip of pictures (at most {limit_mb} MB)",
        type=["csv", "tsv", "txt", "parquet", "zip", "jsonl", "json"],
        key="data_upload",
        help="A table saved as CSV (comma, semicolon or tab separated) with the column names in the "
        "first line; spreadsheet programs save this with 'Save as… CSV'. Or a zip of pictures with one "
        "folder per class, named after the class: `cats/001.jpg`, `dogs/002.png`… (one extra top folder "
        "is fine). Every picture is opened and checked; files that are not usable pictures are listed. "
        "Or a JSONL file of language-model examples (prompt/response, or chat messages).",
    )
    name = st.text_input(
        "Name (optional)",
        key="data_upload_name",
        placeholder=uploaded.name.rsplit(".", 1)[0] if uploaded else "the file name",
    )
    if st.button("Add this file", key="data_add_upload", type="primary", disabled=uploaded is None):
        with ui.guard():
            bar = st.progress(0.0, text="Reading the file…")
            try:
                added = datasets.add_data_file(
                    uploaded.getvalue(),
                    name=name.strip() or None,
                    filename=uploaded.name,
                    max_bytes=limit_mb * 1024 * 1024,
                    progress=lambda fraction, message: bar.progress(
                        min(max(fraction, 0.0), 1.0), text=ui.as_text(message)
                    ),
                )
            finally:
                bar.empty()
            remember(added, ui.added_message(added))


def samples(first_time: bool) -> None:
    st.markdown("**Or start with a built-in sample**")
    for sample, description in datasets.SAMPLES.items():
        label = f"Add sample: {SAMPLE_TITLES.get(sample, sample)}"
        first_step = first_time and sample == "wine"
        if st.button(label, key=f"data_add_sample_{sample}", type="primary" if first_step else "secondary"):
            with ui.guard(), st.spinner("Adding the sample…"):
                added = datasets.add_sample(sample)
                remember(added, f"Added the {SAMPLE_TITLES.get(sample, sample)} sample.")
        st.caption(description)


def choose_data_set(infos: list[datasets.DatasetInfo]) -> datasets.DatasetInfo:
    """The list of data sets, and the one to look at (also the one the Train page starts with)."""
    st.subheader("Your data sets")
    st.dataframe(ui.datasets_frame(infos), hide_index=True, key="data_list")
    ids = [info.id for info in infos]
    by_id = {info.id: info for info in infos}
    if state.get("data_selected") not in ids:
        state["data_selected"] = (
            state.get("current_dataset") if state.get("current_dataset") in ids else ids[0]
        )
    selected = st.selectbox(
        "Look at",
        ids,
        format_func=lambda dataset_id: ui.dataset_label(by_id[dataset_id]),
        key="data_selected",
    )
    info = by_id[selected]
    state["current_dataset"] = info.id
    return info


def next_step(info: datasets.DatasetInfo, profile: dict) -> None:
    picked = ui.picked_words(profile)
    if picked is None:
        has_target = profile.get("suggested_target") and ui.has_columns(info)
        picked = " and its suggested target are already picked," if has_target else " is already picked,"
    st.info(
        f"**What to do next:** open **Train**, where this data set{picked} and press **Train**.",
        icon=":material/arrow_forward:",
    )
    ui.page_link("pages/train.py", "Go to Train", icon=":material/model_training:")


def delete_section(info: datasets.DatasetInfo) -> None:
    with st.expander("Delete this data set", icon=":material/delete:"):
        st.write(
            f"This removes '{ui.as_text(info.name)}' from the studio. Runs already trained on it keep their results "
            "and models."
        )
        sure = st.checkbox(f"Yes, delete '{ui.as_text(info.name)}'", key=f"data_delete_confirm_{info.id}")
        if st.button("Delete data set", key="data_delete", disabled=not sure):
            delete_dataset(info.id)
            ui.forget_datasets()
            state["data_notice"] = f"Deleted '{info.name}'."
            st.rerun()


# --------------------------------------------------------------------------- the page
st.title("Data")
st.caption(
    "Step 1 of 3: add a table or a zip of pictures, check what the studio found in it, then train a model on it."
)

infos = ui.list_datasets()
if not infos:
    welcome()
if notice := state.pop("data_notice", None):
    st.success(ui.as_text(notice), icon=":material/check_circle:")
add_data_set(first_time=not infos)
if not infos:
    st.stop()

info = choose_data_set(infos)
with ui.guard():
    profile = ui.load_profile(info.id)
    st.header(ui.as_text(info.name), anchor=False)
    if ui.has_columns(info):
        show_table(info, profile)
    else:
        show_pictures(info, profile)
    next_step(info, profile)
    delete_section(info)
