"""Train page: pick a data set and what to predict, adjust the settings the spec offers, press Train.

For a data set of pictures the page asks for the network, the picture size and the random changes
shown while training (with a live preview of them), and says when pretrained weights are missing.

What the form shows is what trains: a value the spec does not allow is kept as typed, explained under
its field, and Train stays off (saying why) until it is fixed. One press of Train makes one job.
"""

from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from studio import jobs
from studio.app import charts, forms, search_form, ui
from studio.app.kinds import form_kind as forms_for_kind
from studio.app.kinds import kind_views
from studio.core.pretrained import pretrainable, weights_available
from studio.core.spec import (
    ARCHITECTURES,
    PRESET_HELP,
    PRESETS,
    architectures_for,
    default_architecture,
)
from studio.core.tasks import task_info, tasks_for
from studio.core.text import counted
from studio.data import mirroring_changes_meaning, task_for_target

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


def architecture_help(task: str) -> str:
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


@dataclass
class Choice:
    """What the person picked under "What to learn"."""

    dataset_id: str
    profile: dict[str, Any]
    fixed_target: bool
    """The task's target is fixed by the kind of data (pictures: their folder), not a chosen column."""
    columns: list[str]
    target: str | None
    task: str
    suggested_task: str | None
    architecture: str


@dataclass
class Form:
    """The settings' widgets as drawn: their values, and the places left for what is wrong with them."""

    fields: list[forms.FormField]
    values: dict[str, Any] = field(default_factory=dict)
    error_slots: dict[str, Any] = field(default_factory=dict)
    image_fields: list[forms.FormField] = field(default_factory=list)
    size_note: Any = None
    preview_slot: Any = None


def no_data_sets_yet() -> None:
    st.info(
        "There is no data set yet. Add one on the **Data** page first: a built-in sample is one click.",
        icon=":material/arrow_back:",
    )
    ui.page_link("pages/data.py", "Go to Data", icon=":material/table_chart:")
    st.stop()


def what_to_learn(by_id: dict[str, Any], why_not: list[str]) -> Choice:
    """The data set, the target column, the task and the network."""
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
        tasks = tasks_for(by_id[dataset_id].kind)  # what this kind of data can learn
        fixed = task_info(tasks[0]) if len(tasks) == 1 and task_info(tasks[0]).fixed_target else None
        kind = forms_for_kind(tasks[0])
        if state.get("train_defaults_for") != dataset_id:
            # Each data set starts from its own suitable values (no mirroring for digits, say).
            state["train_defaults_for"] = dataset_id
            # each kind of task this data can learn has its own form keys (a table's, a text's): all start
            for each in dict.fromkeys(tasks):
                for path, value in forms_for_kind(each).starting_values(profile).items():
                    # the network is the page's own select box (e.g. a pretrained one for a small picture set)
                    state["train_architecture" if path == "architecture.name" else forms.field_key(path, each)] = value
        columns = [column["name"] for column in profile["columns"]]
        if fixed is not None:
            target, suggested_task, task = fixed.fixed_target, fixed.name, fixed.name
            st.markdown(kind.learns(profile) or f"**Task:** {fixed.title.lower()}.")
        else:
            target = target_column(columns, profile, why_not)
    with right:
        if fixed is None:
            suggested_task = task_for_target(profile, target) if target is not None else tasks[0]
            task = ui.select(
                "Task",
                tasks,
                "train_task",
                suggested_task or tasks[0],
                format_func=lambda task: task_info(task).choice or task_info(task).title,
                help="Classification predicts a category (e.g. a grape variety); regression predicts a "
                "number (e.g. a price). The studio suggests one from the target column.",
            )
        architecture = network(task)
    if suggested_task is None:
        cannot = (
            f"'{target}' has only one value (or holds dates), so there is nothing to learn from it. "
            "Pick another target column."
        )
        st.warning(ui.as_text(cannot), icon=":material/warning:")
        why_not.append(cannot)
    return Choice(dataset_id, profile, fixed is not None, columns, target, task, suggested_task, architecture)


def target_column(columns: list[str], profile: dict[str, Any], why_not: list[str]) -> str | None:
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
    return target


def suggest_learning_rate(task: str) -> None:
    """A network that wants its own learning rate (fine-tuning a pretrained one) sets the form's field."""
    suggested = ARCHITECTURES[state["train_architecture"]].suggested_learning_rate
    key = forms.field_key("optimizer.learning_rate", task)
    state[key] = suggested or forms.task_defaults(task, state["train_architecture"]).optimizer.learning_rate


def network(task: str) -> str:
    architecture = ui.select(
        "Architecture",
        architectures_for(task),
        "train_architecture",
        default_architecture(task),
        format_func=lambda name: ARCHITECTURES[name].title,
        help=architecture_help(task),
        on_change=suggest_learning_rate,
        args=(task,),
    )
    st.caption(ARCHITECTURES[architecture].description)
    if pretrainable(architecture) and not weights_available(architecture):
        st.caption(
            ":orange[Its pretrained weights are not on this machine, so here it can only learn from "
            "scratch (untick 'Start from pretrained weights').]"
        )
    return architecture


def settings(choice: Choice) -> Form:
    """The preset, then every setting of the spec for this task and network: the main ones in their
    sections, the picture settings beside their preview, the rest folded away."""
    task = choice.task
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

    metric_key = forms.field_key("early_stopping.metric", task)
    if state.get("train_metric_task") != task:
        # each task starts from its own metric to watch (a regression: its error in its own units, see
        # studio.modalities.tabular.registry), as the CLI trains it; classification and regression share
        # the field, and the loss fits both, so a kept value would hide the regression's
        state.pop(metric_key, None)
        state["train_metric_task"] = task
    choices = {
        "early_stopping.metric": {
            m: charts.sentence(charts.metric_label(m)) for m in forms.metric_choices(task)
        },
        "data.features": [name for name in choice.columns if name != choice.target],
        "training.device": forms.device_choices(),
    }
    form = Form(fields=forms.form_fields(choice.architecture, choices, task))
    from_data = data_defaults(choice, form.fields)

    def show_field(field: forms.FormField) -> None:
        """The field's widget, and a place right under it for what is wrong with its value."""
        form.values[field.path] = ui.render_field(field)
        if field.path in from_data:  # e.g. the number embedding: what this data starts with, and why
            st.caption(ui.as_text(f"For this data: {from_data[field.path]}."))
        form.error_slots[field.path] = st.empty()

    main = [f for f in form.fields if not f.advanced and f.section != "image"]
    for field_ in (f for f in main if f.section == ""):
        show_field(field_)

    form.image_fields = [f for f in form.fields if f.section == "image"]
    if form.image_fields:
        st.markdown(f"**{forms.SECTION_TITLES['image']}**")
        settings_column, preview_column = st.columns([1, 2], gap="large")
        with settings_column:
            for field_ in form.image_fields:
                show_field(field_)
            form.size_note = st.empty()
        form.preview_slot = preview_column.container()

    sections = [name for name in forms.SECTION_TITLES if name and any(f.section == name for f in main)]
    for section, column in zip(sections, st.columns(len(sections), gap="medium"), strict=True):
        with column:
            st.markdown(f"**{forms.SECTION_TITLES[section]}**")
            for field_ in (f for f in main if f.section == section):
                show_field(field_)
    defaults_note = f"the defaults suit most {getattr(kind_views(task_info(task).kind), 'DEFAULTS_SUIT', 'data sets')}"
    with st.expander(f"Advanced settings (optional: {defaults_note})", icon=":material/tune:"):
        for section, title in forms.SECTION_TITLES.items():
            section_fields = [
                f for f in form.fields if f.advanced and f.section == section and section != "image"
            ]
            if not section_fields:
                continue
            st.markdown(f"**{title}**")
            advanced_columns = st.columns(3)
            for index, field_ in enumerate(section_fields):
                with advanced_columns[index % 3]:
                    show_field(field_)
    return form


def data_defaults(choice: Choice, fields: list[forms.FormField]) -> dict[str, str]:
    """Settings that start from the data and its target (a table network's number embedding): each is
    set once the data set, target, task, network or chosen feature columns change (a choice made after
    that is kept), as the CLI trains it; returns the reason of each, to show under its field."""
    starting = getattr(forms_for_kind(choice.task), "target_defaults", None)
    if starting is None or choice.target is None:
        return {}
    keys = {f.path: f.key for f in fields}
    # the feature columns as the field holds them now, of this data set (none chosen: every column but
    # the target; the field drops another data set's columns only when it is drawn, after this)
    chosen = (state.get(keys["data.features"]) or []) if "data.features" in keys else []
    features = sorted(name for name in chosen if name in choice.columns)
    marker = [choice.dataset_id, choice.target, choice.task, choice.architecture, features]
    reasons = {}
    for path, (value, reason) in starting(choice.profile, choice.target, features).items():
        if path not in keys:  # a network without this setting
            continue
        if state.get(f"train_from_data__{path}") != marker:
            state[keys[path]] = value
            state[f"train_from_data__{path}"] = marker
        reasons[path] = reason
    return reasons


def picture_settings_preview(choice: Choice, form: Form, spec: Any) -> None:
    """The picture size the network will see, and the preview of the random changes."""
    size = forms_for_kind(spec.task).image_size(spec, choice.profile) if spec is not None else 64
    automatic = spec is not None and not spec.image.size
    form.size_note.caption(
        ("0 means automatic: " if automatic else "")
        + f"pictures are resized to **{size} × {size} px**"
        + (", chosen for this network and these pictures." if automatic else ".")
    )
    with form.preview_slot:
        st.caption(
            "**Preview:** a picture as the network sees it, then random changes of it as training "
            "shows them. If a variant no longer looks like its class, tone the changes down."
        )
        image_values = {f.path.split(".", 1)[1]: form.values[f.path] for f in form.image_fields}
        mirroring = mirroring_changes_meaning(choice.profile)
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
        picture_preview(choice.dataset_id, image_values, size)


def before_you_start(choice: Choice, spec: Any, check: Any, blockers: list[str]) -> bool:
    """Notes on the data, what would stop training, where it trains and how long it may take.

    Returns whether the data refuses this target (a name or an ID picked as the classes, say)."""
    st.subheader("Before you start")
    if choice.target is None:
        data_warnings = choice.profile.get("warnings", [])
    else:
        data_warnings = forms_for_kind(choice.task).data_notes(
            choice.profile, lambda: ui.target_warnings(choice.dataset_id, choice.target, choice.task)
        )
    refused = any(w.get("blocks") for w in data_warnings)
    if data_warnings:
        with st.expander(
            f"About the data ({counted(len(data_warnings), 'note')})", expanded=True, icon=":material/info:"
        ):
            ui.show_warnings(data_warnings)
    for blocker in blockers:
        st.warning(ui.as_text(blocker), icon=":material/block:")
    if spec is not None:
        # e.g. what a download of the base model fetches, and how big
        for note in forms_for_kind(choice.task).model_notes(spec):
            st.info(ui.as_text(note), icon=":material/download:")
    weights_key = f"{forms.KEY_PREFIX}arch_{choice.architecture}__pretrained"
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
        time_and_place(choice, spec)
    for error in check.errors:
        st.error(ui.as_text(error), icon=":material/error:")
    return refused


def time_and_place(choice: Choice, spec: Any) -> None:
    """Risky settings for this much data, the device, and a rough guess of the time."""
    rows = forms.usable_rows(choice.profile, choice.target)
    for advice in forms.risky_values(spec, rows, unit=task_info(choice.task).unit):
        st.warning(advice, icon=":material/warning:")
    device = forms.device_text(spec.training.device, devices=spec.training.devices)
    on_gpu = device.startswith("GPU")
    estimate = forms_for_kind(choice.task).time_guess(
        spec, choice.profile, rows, len(choice.columns), on_gpu=on_gpu
    )
    st.markdown(f"**Where it trains:** {device}  \n**How long:** {estimate.text}")


def train_button(spec: Any, blocked: bool, why_not: list[str]) -> None:
    """Train, off (saying why) while something is wrong; its press makes one job and opens its run."""
    st.caption(
        "Training runs in the background: you can close the browser or train more models meanwhile. "
        "The Runs page shows its progress live."
    )
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
            ui.remember_train_press(job.id)
            ui.go_to_run(job.id)
    else:
        forget("train_token")  # the next press is a new one


# --------------------------------------------------------------------------- the page
st.title("Train")
st.caption("Step 2 of 3: choose what to predict, check the settings, press **Train**.")

infos = ui.list_datasets()
if not infos:
    no_data_sets_yet()

# The Train page with the address of the job this session just made: the second click of a double click
# that reached the page after the first had made the job and opened its run page (the Train button was
# already off, so it made nothing) lands on that run page too, once, and only right after the press. Later
# (a person who goes back to Train from the run page, the address can keep its ``job``) the page stays.
if again := ui.second_click_of_train(st.query_params.get("job")):
    ui.go_to_run(again)

by_id = {info.id: info for info in infos}
if state.get("current_dataset") != state.get("train_dataset"):
    forget("train_dataset", "train_target", "train_task")  # the data set was chosen on the Data page
why_not: list[str] = []  # why Train cannot start, in plain words (listed beside the button)
with ui.guard():
    choice = what_to_learn(by_id, why_not)
    form = settings(choice)
    check = forms.check_values(
        dataset_id=choice.dataset_id,
        target=choice.target,
        task=choice.task,
        architecture=choice.architecture,
        values=form.values,
        fields=form.fields,
    )
    for path, message in check.field_errors.items():
        form.error_slots[path].error(ui.as_text(message), icon=":material/error:")
    why_not += check.field_errors.values()  # (the advanced ones may be folded away: listed again below)
    spec = check.spec
    blockers = forms_for_kind(choice.task).blockers(spec) if spec is not None else []
    if form.image_fields:
        picture_settings_preview(choice, form, spec)
    refused = before_you_start(choice, spec, check, blockers)
    blocked = bool(why_not or check.errors or refused or blockers)
    train_button(spec, blocked, why_not)
    search_form.find_best_settings(spec, blocked)  # a search around these settings (studio.search)
