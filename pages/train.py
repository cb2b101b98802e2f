"""Train page: pick a data set and what to predict, adjust the settings the spec offers, press Train.

For a data set of pictures the page asks for the network, the picture size and the random changes
shown while training (with a live preview of them), and says when pretrained weights are missing.

What the form shows is what trains: a value the spec does not allow is kept as typed, explained under
its field, and Train stays off (saying why) until it is fixed. One press of Train makes one job.
"""

import streamlit as st

from studio import charts, forms, jobs, ui
from studio.datasets import image_defaults, mirroring_changes_meaning, suggest_task
from studio.pretrained import weights_available, weights_path
from studio.spec import (
    ARCHITECTURES,
    IMAGE_TARGET,
    PRESET_HELP,
    PRESETS,
    TASKS,
    architectures_for,
    default_architecture,
)

TASK_LABELS = {
    "classification": "Classification (predict a category)",
    "regression": "Regression (predict a number)",
}
IMAGE_TASK = "image_classification"
PICK_TARGET = "Pick the column you want to predict."
PREVIEW_VARIANTS = 9
PREVIEW_WIDTH = 112  # px on screen, whatever the training size (small pictures are shown enlarged)
state = st.session_state

ui.require_app()


def forget(*keys: str) -> None:
    """Let dependent choices start again from their suggestion (a new data set, a new target)."""
    for key in keys:
        state.pop(key, None)


def dataset_chosen() -> None:
    """The Data set dropdown changed: that data set is now the current one (the Data page opens it too),
    and the target and task start again from its suggestions."""
    state["current_dataset"] = state["train_dataset"]
    forget("train_target", "train_task")


def press_train() -> None:
    """Train was pressed (this runs before the page does). The press is remembered until its job is
    made, with a token shared by every press that arrives before then (a double click): the job store
    makes one job per token."""
    state["train_pressed"] = True
    state.setdefault("train_token", ui.new_token())


def apply_preset(task: str) -> None:
    for path, value in forms.preset_values(state["train_preset"]).items():
        state[forms.field_key(path, task)] = value


def untick(key: str) -> None:
    state[key] = False


def next_preview() -> None:
    state["train_preview_seed"] = state.get("train_preview_seed", 0) + 1


def architecture_help() -> str:
    return "The kind of model. " + " ".join(
        f"{a.title}: {a.description}" for a in ARCHITECTURES.values() if a.name in architectures_for(task)
    )


def picture_preview(dataset_id: str, image_values: dict, size: int) -> None:
    """The chosen picture as the network sees it, then random variants as training shows them."""
    pictures = ui.first_pictures(dataset_id)
    chosen = ui.select(
        "Picture to preview",
        list(pictures),
        "train_preview_class",
        format_func=lambda name: f"the first picture of '{name}'",
        help="Any class's first picture; the variants change as you change the settings on the left.",
    )
    settings = tuple(sorted(image_values.items()))
    shown = ui.augmentation_preview(
        pictures[chosen], settings, size, PREVIEW_VARIANTS, state.get("train_preview_seed", 0)
    )
    captions = ["as prepared"] + [f"variant {i}" for i in range(1, len(shown))]
    st.image(shown, caption=captions, width=PREVIEW_WIDTH)
    st.button(
        "Show other random variants",
        key="train_preview_again",
        icon=":material/refresh:",
        on_click=next_preview,
        help="Each epoch shows every picture with new random changes like these.",
    )


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

if state.get("train_job") and st.query_params.get("job") == state["train_job"]:
    # A second click of a double click reached the page after the first had made the job and opened its
    # run page (the Train button was already off, so it made nothing): it lands on that run page too.
    ui.go_to_run(state["train_job"])

by_id = {info.id: info for info in infos}
if state.get("current_dataset") != state.get("train_dataset"):
    forget("train_dataset", "train_target", "train_task")  # the data set was chosen on the Data page
why_not: list[str] = []  # why Train cannot start, in plain words (listed beside the button)
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
            help="The table or the pictures to learn from. Add more on the Data page.",
            on_change=dataset_chosen,
        )
        state["current_dataset"] = dataset_id
        profile = ui.load_profile(dataset_id)
        pictures = ui.is_pictures(by_id[dataset_id])
        if pictures and state.get("train_image_defaults_for") != dataset_id:
            # Each picture set starts from its own suitable values (no mirroring for digits, say).
            state["train_image_defaults_for"] = dataset_id
            for path, value in image_defaults(profile).items():
                state[forms.field_key(path, IMAGE_TASK)] = value
        columns = [column["name"] for column in profile["columns"]]
        if pictures:
            target, suggested_task, task = IMAGE_TARGET, IMAGE_TASK, IMAGE_TASK
            names = [c["name"] for c in profile.get("classes", [])]
            shown = ", ".join(map(ui.as_text, names[:8])) + (
                f" and {len(names) - 8} more" if len(names) > 8 else ""
            )
            st.markdown(
                f"**Task:** image classification: the model learns to tell which of the "
                f"**{len(names)} classes** a picture shows ({shown})."
            )
        else:
            target = ui.select(
                "Target column",
                columns,
                "train_target",
                profile.get("suggested_target"),
                help="The column the model learns to predict. The studio suggests one when the table makes "
                "it clear; pick another if you like.",
                on_change=forget,
                args=("train_task",),
                placeholder="Choose a column",
            )
            if target is None:
                st.info(PICK_TARGET, icon=":material/arrow_upward:")
                why_not.append(PICK_TARGET)
    with right:
        if not pictures:
            suggested_task = suggest_task(profile, target) if target is not None else "classification"
            task = ui.select(
                "Task",
                list(TASKS),
                "train_task",
                suggested_task or "classification",
                format_func=TASK_LABELS.get,
                help="Classification predicts a category (e.g. a grape variety); regression predicts a "
                "number (e.g. a price). The studio suggests one from the target column.",
            )
        architecture = ui.select(
            "Architecture",
            architectures_for(task),
            "train_architecture",
            default_architecture(task),
            format_func=lambda name: ARCHITECTURES[name].title,
            help=architecture_help(),
        )
        st.caption(ARCHITECTURES[architecture].description)
        if pictures and weights_path(architecture) is not None and not weights_available(architecture):
            st.caption(
                ":orange[Its pretrained weights are not on this machine, so here it can only learn from "
                "scratch (untick 'Start from pretrained weights').]"
            )
    if suggested_task is None:
        cannot = (
            f"'{target}' has only one value (or holds dates), so there is nothing to learn from it. "
            "Pick another target column."
        )
        st.warning(ui.as_text(cannot), icon=":material/warning:")
        why_not.append(cannot)

    st.subheader("Settings")
    preset = st.radio(
        "Preset",
        list(PRESETS),
        index=list(PRESETS).index("balanced"),
        key="train_preset",
        horizontal=True,
        format_func=str.capitalize,
        on_change=apply_preset,
        args=(task,),
        help=" ".join(f"{name.capitalize()}: {text}" for name, text in PRESET_HELP.items()),
        persist_state="session",
    )
    st.caption(PRESET_HELP[preset] + " Point at the **?** beside any setting to read what it does.")

    choices = {
        "early_stopping.metric": {
            m: charts.sentence(charts.metric_label(m)) for m in forms.metric_choices(task)
        },
        "data.features": [name for name in columns if name != target],
        "training.device": forms.device_choices(),
    }
    fields = forms.form_fields(architecture, choices, task)
    values, error_slots = {}, {}

    def show_field(field: forms.FormField) -> None:
        """The field's widget, and a place right under it for what is wrong with its value."""
        values[field.path] = ui.render_field(field)
        error_slots[field.path] = st.empty()

    main = [f for f in fields if not f.advanced and f.section != "image"]
    for field in (f for f in main if f.section == ""):
        show_field(field)

    image_fields = [f for f in fields if f.section == "image"]
    if image_fields:
        st.markdown(f"**{forms.SECTION_TITLES['image']}**")
        settings_column, preview_column = st.columns([1, 2], gap="large")
        with settings_column:
            for field in image_fields:
                show_field(field)
            size_note = st.empty()
        preview_slot = preview_column.container()

    sections = [name for name in forms.SECTION_TITLES if name and any(f.section == name for f in main)]
    for section, column in zip(sections, st.columns(len(sections), gap="medium"), strict=True):
        with column:
            st.markdown(f"**{forms.SECTION_TITLES[section]}**")
            for field in (f for f in main if f.section == section):
                show_field(field)
    defaults_note = "the defaults suit most pictures" if pictures else "the defaults suit most tables"
    with st.expander(f"Advanced settings (optional: {defaults_note})", icon=":material/tune:"):
        for section, title in forms.SECTION_TITLES.items():
            section_fields = [f for f in fields if f.advanced and f.section == section and section != "image"]
            if not section_fields:
                continue
            st.markdown(f"**{title}**")
            advanced_columns = st.columns(3)
            for index, field in enumerate(section_fields):
                with advanced_columns[index % 3]:
                    show_field(field)

    check = forms.check_values(
        dataset_id=dataset_id,
        target=target,
        task=task,
        architecture=architecture,
        values=values,
        fields=fields,
    )
    for path, message in check.field_errors.items():
        error_slots[path].error(ui.as_text(message), icon=":material/error:")
    why_not += check.field_errors.values()  # (the advanced ones may be folded away: listed again below)
    spec = check.spec
    blockers = forms.image_blockers(spec) if pictures and spec is not None else []

    if image_fields:
        size = forms.image_size(spec, profile) if spec is not None else 64
        automatic = spec is not None and not spec.image.size
        size_note.caption(
            ("0 means automatic: " if automatic else "")
            + f"pictures are resized to **{size} × {size} px**"
            + (", chosen for this network and these pictures." if automatic else ".")
        )
        with preview_slot:
            st.caption(
                "**Preview:** a picture as the network sees it, then random changes of it as training "
                "shows them. If a variant no longer looks like its class, tone the changes down."
            )
            image_values = {f.path.split(".", 1)[1]: values[f.path] for f in image_fields}
            mirroring = mirroring_changes_meaning(profile)
            if mirroring and image_values.get("horizontal_flip"):
                st.warning(
                    ui.as_text(
                        f"Mirroring is on, but {mirroring}: a mirrored picture may show another class (a "
                        "mirrored 'b' reads as a 'd'). Untick 'Mirror left–right' unless mirrored pictures "
                        "still show the same class."
                    ),
                    icon=":material/flip:",
                )
            elif mirroring:
                st.caption(ui.as_text(f"Mirroring starts off here: {mirroring}."))
            picture_preview(dataset_id, image_values, size)

    st.subheader("Before you start")
    if pictures or target is None:
        data_warnings = profile.get("warnings", [])
    else:
        data_warnings = ui.target_warnings(dataset_id, target, task)
    refused = any(w.get("blocks") for w in data_warnings)  # e.g. a name or an ID picked as the classes
    if data_warnings:
        with st.expander(
            f"About the data ({len(data_warnings)} notes)", expanded=True, icon=":material/info:"
        ):
            ui.show_warnings(data_warnings)
    for blocker in blockers:
        st.warning(ui.as_text(blocker), icon=":material/block:")
    weights_key = f"{forms.KEY_PREFIX}arch_{architecture}__pretrained"
    if blockers and state.get(weights_key):  # pretrained weights asked for but missing
        st.button(
            "Train from scratch instead",
            key="train_from_scratch",
            type="primary",
            icon=":material/restart_alt:",
            on_click=untick,
            args=(weights_key,),
            help="Unticks 'Start from pretrained weights': the network learns from your pictures alone.",
        )
    if spec is not None:
        rows = forms.usable_rows(profile, target)
        for advice in forms.risky_values(spec, rows, unit="pictures" if pictures else "rows"):
            st.warning(advice, icon=":material/warning:")
        device = forms.device_text(spec.training.device)
        on_gpu = device.startswith("GPU")
        if pictures:
            estimate = forms.estimate_image_time(spec, rows, forms.image_size(spec, profile), on_gpu=on_gpu)
        else:
            n_features = len(spec.data.features) if spec.data.features else len(columns) - 1
            estimate = forms.estimate_time(spec, rows, n_features, on_gpu=on_gpu)
        st.markdown(f"**Where it trains:** {device}  \n**How long:** {estimate.text}")
    for error in check.errors:
        st.error(ui.as_text(error), icon=":material/error:")

    st.caption(
        "Training runs in the background: you can close the browser or train more models meanwhile. "
        "The Runs page shows its progress live."
    )
    blocked = bool(why_not or check.errors or refused or blockers)
    if why_not:
        st.warning(
            "**Train is off until this is fixed:**\n"
            + "\n".join(f"- {ui.as_text(reason)}" for reason in dict.fromkeys(why_not)),
            icon=":material/block:",
        )
    elif blocked:  # the data's refusal, the picture blocker or the settings' combination is just above
        st.caption(":orange[**Train is off until the problem noted above is fixed.**]")
    pressed = bool(state.get("train_pressed"))
    st.button(  # off while its press makes the job; Streamlit then also ignores clicks that were queued
        "Train",
        key="train_submit",
        type="primary",
        icon=":material/play_arrow:",
        disabled=blocked or pressed,
        on_click=press_train,
    )
    if pressed:
        job = jobs.submit_job(spec, token=state["train_token"]) if spec is not None and not blocked else None
        forget("train_pressed")
        if job is not None:
            state["train_job"] = job.id
            ui.go_to_run(job.id)
    else:
        forget("train_token")  # the next press is a new one
