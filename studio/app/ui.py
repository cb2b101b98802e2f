"""Small helpers the pages share: errors as plain messages, cached data-set reads, links between pages,
the MLflow UI address, and one widget per :class:`~studio.app.forms.FormField`.

Imports Streamlit and the cheap studio modules only (never torch or lightning), so pages stay instant.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from studio import data as datasets
from studio.app.forms import FormField
from studio.core.errors import StudioError
from studio.core.settings import studio_home
from studio.core.tasks import data_kind, data_word, readings
from studio.core.text import as_text, counted  # pages call as_text as ui.as_text

APP_ROOT = Path(__file__).resolve().parents[2]
MLFLOW_UI_ENV = "STUDIO_MLFLOW_UI_URL"
CACHE_SECONDS = 10


# --------------------------------------------------------------------------- errors
def show_error(err: BaseException) -> None:
    """Show a :class:`StudioError` the way every page does: its one plain sentence, no traceback."""
    st.error(as_text(err), icon=":material/error:")


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """``with guard(): ...`` shows a :class:`StudioError` raised inside as ``st.error`` and carries on
    after the block (other exceptions are bugs and propagate)."""
    try:
        yield
    except StudioError as err:
        show_error(err)


# --------------------------------------------------------------------------- settings
def mlflow_ui_url() -> str | None:
    """The MLflow UI address given by ``studio serve`` (``STUDIO_MLFLOW_UI_URL``), with the host name
    this browser used to reach the studio (so links work from another computer too), or None."""
    from studio.server.serve import for_browser

    url = os.environ.get(MLFLOW_UI_ENV, "").strip().rstrip("/")
    if not url:
        return None
    try:
        host = st.context.headers.get("Host")
    except Exception:  # no browser behind this run (a test calling it directly)
        host = None
    return for_browser(url, host)


def upload_limit_mb() -> int:
    """The upload size limit in MB (``server.maxUploadSize`` in ``.streamlit/config.toml``)."""
    try:
        return int(st.get_option("server.maxUploadSize"))
    except (RuntimeError, TypeError, ValueError):
        return 200


# --------------------------------------------------------------------------- data sets (cached)
# The cache key includes the studio folder, so two studios (or tests) in one process never mix; pages
# call ``forget_datasets()`` after adding or deleting one, and the short TTL picks up CLI changes.
@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def _list_datasets(home: str) -> list[datasets.DatasetInfo]:
    return datasets.list_datasets()


@st.cache_data(ttl=CACHE_SECONDS * 6, show_spinner=False, max_entries=16)
def _load_profile(home: str, dataset_id: str) -> dict[str, Any]:
    return datasets.load_profile(dataset_id)


@st.cache_data(ttl=CACHE_SECONDS * 6, show_spinner=False, max_entries=4)
def _load_table(home: str, dataset_id: str) -> pd.DataFrame:
    return datasets.load_table(dataset_id)


def list_datasets() -> list[datasets.DatasetInfo]:
    """Stored data sets, newest first (cached for a few seconds)."""
    return _list_datasets(str(studio_home()))


def load_profile(dataset_id: str) -> dict[str, Any]:
    return _load_profile(str(studio_home()), dataset_id)


def load_table(dataset_id: str) -> pd.DataFrame:
    return _load_table(str(studio_home()), dataset_id)


@st.cache_data(ttl=CACHE_SECONDS * 6, show_spinner=False, max_entries=32)
def _target_warnings(home: str, dataset_id: str, target: str, task: str | None) -> list[dict[str, Any]]:
    return datasets.warnings_for_target(
        datasets.load_table(dataset_id), datasets.load_profile(dataset_id), target, task
    )


def target_warnings(dataset_id: str, target: str, task: str | None) -> list[dict[str, Any]]:
    """The data set's warnings as they read with ``target`` as the target (cached)."""
    return _target_warnings(str(studio_home()), dataset_id, target, task)


def forget_datasets() -> None:
    """Drop the cached data-set reads (after adding or deleting one)."""
    _list_datasets.clear()
    _load_profile.clear()
    _load_table.clear()
    _target_warnings.clear()
    _sample_grid.clear()
    _first_pictures.clear()


def has_columns(info: datasets.DatasetInfo) -> bool:
    """Whether a stored data set is a table whose columns the pages show and let the user pick, rather
    than a folder of files (a zip of picture folders): its kind's registration says."""
    return data_kind(info.kind).columns


def reading_views() -> list[Any]:
    """The Data-page parts of the kinds' readings of a table (``studio.core.tasks.Reading.views``:
    language-model examples), each module imported when first asked for."""
    import importlib

    return [importlib.import_module(reading.views) for reading in readings() if reading.views]


def reading_section(info: datasets.DatasetInfo, table: pd.DataFrame, profile: dict[str, Any]) -> bool:
    """Whether a kind's reading of the table showed it its own way on the Data page."""
    return any(views.data_section(info, table, profile) for views in reading_views())


def picked_words(profile: dict[str, Any]) -> str | None:
    """What the Train page has already picked for a data set a kind's reading describes, if any."""
    return next((words for views in reading_views() if (words := views.picked_words(profile))), None)


def dataset_label(info: datasets.DatasetInfo) -> str:
    """``wine — 178 rows × 14 columns`` (or ``pets — 240 pictures``) for pick lists."""
    if has_columns(info):
        return f"{info.name} — {counted(info.n_rows, 'row')} × {counted(info.n_cols, 'column')}"
    return f"{info.name} — {counted(info.n_rows, data_kind(info.kind).unit)}"


def added_message(info: datasets.DatasetInfo) -> str:
    """What the Data page says after an upload."""
    if has_columns(info):
        return f"Added '{info.name}': {counted(info.n_rows, 'row')}, {counted(info.n_cols, 'column')}."
    classes = int(load_profile(info.id).get("n_classes", 0))
    return f"Added '{info.name}': {counted(info.n_rows, data_kind(info.kind).unit)} in {classes:,} classes."


# --------------------------------------------------------------------------- start-up
@st.cache_resource(show_spinner=False)
def warm_tracking() -> None:
    """Import mlflow and open the tracking store in the background, once per server process, so the
    first live chart does not wait for it (the import alone takes a couple of seconds)."""
    import threading

    def warm() -> None:
        from studio import tracking

        with contextlib.suppress(Exception):  # a page that needs MLflow reports any real problem
            tracking.client()

    threading.Thread(target=warm, name="warm-mlflow", daemon=True).start()


# --------------------------------------------------------------------------- pages and links
def require_app() -> None:
    """Make sure this page runs inside ``app.py`` (its menu, page config and sidebar); call it first.

    Streamlit 1.67 treats a ``pages/`` folder as an old-style multipage app until ``app.py`` has run
    once in the server process (its ``st.navigation`` call switches that off). A visitor whose first
    request after a server start is a page address such as ``/train`` or ``/runs?job=...`` would get
    that page alone, with a menu of file names. Switching the flag off and rerunning runs ``app.py``,
    which shows the requested page (same address, same query parameters).

    AppTest resets that flag before every run, so there a rerun would swallow each button click; tests
    run the page as it is.
    """
    from streamlit import config
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not config.get_option("global.appTest"):
        PagesManager.uses_pages_directory = False
        st.rerun()


def page_exists(page: str) -> bool:
    """Whether a page file (e.g. ``pages/runs.py``) is part of this checkout."""
    return (APP_ROOT / page).is_file()


def page_link(page: str, label: str, icon: str | None = None) -> None:
    """A link to another page; plain text when the page is not available (e.g. a page run on its own)."""
    try:
        if not page_exists(page):
            raise StreamlitAPIException(page)
        st.page_link(page, label=label, icon=icon)
    except StreamlitAPIException:
        st.markdown(f"**{label}** (in the menu on the left)")


def new_token() -> str:
    """A random token for one press of a submit button (:func:`studio.jobs.submit_job` makes one job per
    token, however often the press arrives)."""
    return secrets.token_hex(8)


DOUBLE_CLICK_SECONDS = 5.0
"""How long after a press of Train (or after the run page it opened first finished showing) the Train page
still takes its own address with that job (``?job=``) for the second click of a double click and opens the
run page again (pages/train.py); later it is a person coming back to Train, and the page stays."""
TRAIN_PRESS = "train_job"
"""Session state: the job this session's last press of Train made, when, and whether its run page has
finished showing once."""


def remember_train_press(job_id: str) -> None:
    st.session_state[TRAIN_PRESS] = {"job": job_id, "at": time.monotonic(), "run_page_shown": False}


def run_page_shown(job_id: str) -> None:
    """The run page has finished showing ``job_id``. The first time for the job a press of Train just made,
    the double-click window starts again from now: on a busy machine the second click's rerun of the Train
    page can arrive later than :data:`DOUBLE_CLICK_SECONDS` after the press, but it comes right after this
    page. Its later refreshes do not move the window."""
    press = st.session_state.get(TRAIN_PRESS)
    if press and press["job"] == job_id and not press["run_page_shown"]:
        press.update(at=time.monotonic(), run_page_shown=True)


def second_click_of_train(job_param: str | None) -> str | None:
    """The job to open again when the Train page is shown with ``?job=`` of the job this session's press
    just made, within the double-click window (see :data:`DOUBLE_CLICK_SECONDS`); once, then forgotten."""
    press = st.session_state.get(TRAIN_PRESS)
    if not press or job_param != press["job"]:
        return None
    del st.session_state[TRAIN_PRESS]
    return press["job"] if time.monotonic() - press["at"] < DOUBLE_CLICK_SECONDS else None


def go_to_run(job_id: str) -> None:
    """Open the run page for a job; if it is not available, say where the run can be followed."""
    try:
        if page_exists("pages/runs.py"):
            st.switch_page("pages/runs.py", query_params={"job": job_id})
    except StreamlitAPIException:
        pass
    st.success(
        f"Training started (job `{job_id}`). Follow it on the **Runs** page, or in a terminal with "
        f"`python -m studio jobs show {job_id}`.",
        icon=":material/rocket_launch:",
    )


# --------------------------------------------------------------------------- form widgets
def select(
    label: str,
    options: list[Any],
    key: str,
    default: Any = None,
    *,
    format_func: Any = str,
    help: str | None = None,
    on_change: Any = None,
    args: tuple[Any, ...] | None = None,
    placeholder: str | None = None,
) -> Any:
    """A selectbox whose remembered value is dropped when it is no longer one of ``options`` (the
    other data set's column, the other task's metric); it then starts at ``default``.

    With a ``placeholder``, a ``default`` of ``None`` starts with nothing chosen (the placeholder shows
    and the value is ``None`` until the user picks one); without one it starts at the first option."""
    state = st.session_state
    if key in state and state[key] not in options and (state[key] is not None or placeholder is None):
        del state[key]
    if key not in state:
        state[key] = default if default in options else (None if placeholder else options[0])
    return st.selectbox(
        label,
        options,
        key=key,
        format_func=format_func,
        help=help,
        on_change=on_change,
        args=args,
        placeholder=placeholder,
        persist_state="session",
    )


def render_field(field: FormField) -> Any:
    """One widget for a spec field, keyed by ``field.key``; returns its value.

    The value is kept for the whole session (``persist_state="session"``), so settings survive a visit
    to another page. The starting value is put in Session State before the widget is made (never also
    passed as ``value=``), so callbacks such as presets can change it.
    """
    state = st.session_state
    if field.widget == "select":
        return select(
            field.label,
            list(field.options),
            field.key,
            field.default,
            format_func=field.option_label,
            help=field.help,
        )
    if field.widget == "multiselect" and field.key in state:
        state[field.key] = [item for item in state[field.key] or [] if item in field.options]
    if field.key not in state:
        state[field.key] = [] if field.widget == "multiselect" and field.default is None else field.default
    common = {"label": field.label, "help": field.help or None, "key": field.key, "persist_state": "session"}
    if field.widget == "checkbox":
        # a long label wraps onto a second line: in a narrow column Streamlit would cut it ("Batch normalisati…")
        return st.checkbox(wrap=True, **common)
    if field.widget == "multiselect":
        return st.multiselect(
            options=list(field.options),
            format_func=field.option_label,
            placeholder="Every useful column",
            **common,
        )
    if field.widget == "number":  # no min/max: the field keeps what is typed; the spec check says why not
        return st.number_input(
            step=_as_number(field.step, field.integer), format=field.number_format, **common
        )
    return st.text_input(placeholder="(optional)" if field.optional else None, **common)


def _as_number(value: float | None, integer: bool) -> int | float | None:
    if value is None:
        return None
    return int(value) if integer else float(value)


# --------------------------------------------------------------------------- data-set views
KIND_WORDS = {
    "numeric": "number",
    "categorical": "category",
    "boolean": "yes / no",
    "datetime": "date / time",
    "text": "free text",
    "identifier": "id (ignored)",
}


KIND_HELP = {
    "identifier": "**id (ignored)**: a different value in almost every row, like a name, a code or a row "
    "number; it tells the model nothing about new rows, so it is left out (pick it under 'Feature "
    "columns' to use it anyway).",
    "text": "**free text**: sentences or long labels; a table model cannot read them, so they are left out.",
}


def type_explanations(profile_frame: pd.DataFrame) -> list[str]:
    """One line per column type in the table that needs explaining (ids, free text), as Markdown."""
    shown = set(profile_frame["Type"]) if "Type" in profile_frame else set()
    return [text for kind, text in KIND_HELP.items() if KIND_WORDS[kind] in shown]


def _short(value: Any) -> str:
    """A column value as people write it: ``2007`` (not ``2,007``), ``12,345``, ``0.5``, never ``1e+04``."""
    if value is None:
        return "–"
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        if abs(value) < 1000:
            return f"{value:.4g}" if abs(value) >= 0.001 else f"{value:.2g}"
        value = round(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        whole = int(value)
        return f"{whole:,}" if abs(whole) >= 10_000 else str(whole)
    return str(value)


def column_summary(column: dict[str, Any]) -> str:
    """One line about a column's values: the range and mean of numbers, the commonest categories."""
    stats = column.get("stats") or {}
    if column["kind"] == "numeric":
        if stats.get("min") is None:
            return "no values"
        return f"{_short(stats['min'])} to {_short(stats['max'])}, average {_short(stats.get('mean'))}"
    if column["kind"] == "datetime":
        return "no dates" if stats.get("min") is None else f"{stats['min'][:10]} to {stats['max'][:10]}"
    if column["kind"] == "text" and "words_mean" in stats:
        words = ", ".join(word for word, _ in stats.get("top_words", [])[:5])
        return f"{stats['words_mean']:.1f} words on average; frequent words: {words}"
    top = stats.get("top") or []
    return ", ".join(f"{value} ({count:,})" for value, count in top[:3])


def distinct_words(column: dict[str, Any]) -> str:
    """``"3"``, ``"12,345"``, or ``"at least 98,000"`` when the profile counted a long column's
    different values on a sample of its rows (a lower bound: the rest can only add values)."""
    return ("at least " if column.get("distinct_at_least") else "") + f"{column['distinct']:,}"


def profile_frame(profile: dict[str, Any]) -> pd.DataFrame:
    """The profile's columns as a readable table (one row per column of the data set)."""
    rows = []
    for column in profile["columns"]:
        missing = column["missing"]
        rows.append(
            {
                "Column": column["name"],
                "Type": KIND_WORDS.get(column["kind"], column["kind"]),
                "Missing": f"{missing:,} ({column['missing_share']:.0%})" if missing else "none",
                "Different values": distinct_words(column),
                "Values": column_summary(column),
                "Examples": ", ".join(column.get("examples") or []),
            }
        )
    return pd.DataFrame(rows, columns=["Column", "Type", "Missing", "Different values", "Values", "Examples"])


def datasets_frame(infos: list[datasets.DatasetInfo]) -> pd.DataFrame:
    """The stored data sets as a table."""
    return pd.DataFrame(
        [
            {
                "Name": info.name,
                "Kind": data_word(info.kind, load_profile(info.id)),
                "Size": size_words(info),
                "Added (UTC)": info.created.replace("T", " ")[:16],
                "From": info.source_file.replace("sample:", "built-in sample: "),
                "Id": info.id,
            }
            for info in infos
        ],
        columns=["Name", "Kind", "Size", "Added (UTC)", "From", "Id"],
    )


def size_words(info: datasets.DatasetInfo) -> str:
    """``178 rows × 14 columns`` for a table, ``98 pictures in 3 classes`` for pictures."""
    if has_columns(info):
        return f"{counted(info.n_rows, 'row')} × {counted(info.n_cols, 'column')}"
    classes = int(load_profile(info.id).get("n_classes", 0))
    return f"{counted(info.n_rows, data_kind(info.kind).unit)} in {counted(classes, 'class', 'classes')}"


def show_warnings(warnings: list[dict[str, Any]]) -> None:
    """Each data warning in plain words, with what the studio will do about it."""
    for warning in warnings:
        st.warning(
            f"{as_text(warning['message'])}\n\n**What the studio does:** {as_text(warning['action'])}",
            icon=":material/block:" if warning.get("blocks") else ":material/info:",
        )


# --------------------------------------------------------------------------- picture data sets
@st.cache_data(ttl=CACHE_SECONDS * 6, show_spinner=False, max_entries=8)
def _sample_grid(home: str, dataset_id: str, per_class: int) -> list[tuple[str, int, list[str]]]:
    from studio.app.images_view import sample_grid

    return [(c.name, c.count, [str(p) for p in c.thumbnails]) for c in sample_grid(dataset_id, per_class)]


def sample_grid(dataset_id: str, per_class: int = 8) -> list[tuple[str, int, list[str]]]:
    """``[(class, pictures, thumbnail files)]`` of a picture data set (cached)."""
    return _sample_grid(str(studio_home()), dataset_id, per_class)


def classes_frame(profile: dict[str, Any]) -> pd.DataFrame:
    """Pictures per class as a table."""
    from studio.app.images_view import class_counts

    rows = [
        {"Class": row["class"], "Pictures": row["pictures"], "Share": f"{row['share']:.0%}"}
        for row in class_counts(profile)
    ]
    return pd.DataFrame(rows, columns=["Class", "Pictures", "Share"])


def skipped_frame(profile: dict[str, Any]) -> pd.DataFrame:
    """Files of the zip that did not become pictures of the data set, with the reason."""
    from studio.app.images_view import skipped_files

    rows = [
        {"File in the zip": row["file"], "Why it was left out": row["reason"]}
        for row in skipped_files(profile)
    ]
    return pd.DataFrame(rows, columns=["File in the zip", "Why it was left out"])


def size_text(profile: dict[str, Any]) -> str:
    """``24 × 24 px`` or ``from 32 × 20 to 640 × 480 px (usually 300 × 200)`` about a picture data set."""
    sizes = profile.get("sizes") or {}
    width, height = sizes.get("width") or {}, sizes.get("height") or {}
    if not width or not height:
        return "unknown"
    if width["min"] == width["max"] and height["min"] == height["max"]:
        return f"all {width['min']:,} × {height['min']:,} px"
    return (
        f"from {width['min']:,} × {height['min']:,} to {width['max']:,} × {height['max']:,} px "
        f"(usually about {width['median']:,.0f} × {height['median']:,.0f})"
    )


@st.cache_data(ttl=CACHE_SECONDS * 6, show_spinner=False, max_entries=8)
def _first_pictures(home: str, dataset_id: str) -> dict[str, str]:
    table = datasets.image_paths(dataset_id)
    first = table.drop_duplicates("label")
    return {str(label): str(path) for label, path in zip(first["label"], first["path"], strict=True)}


def first_pictures(dataset_id: str) -> dict[str, str]:
    """``{class: path of its first picture}`` of a picture data set (cached), for the Train preview."""
    return _first_pictures(str(studio_home()), dataset_id)


@st.cache_data(show_spinner=False, max_entries=64)
def augmentation_preview(
    path: str, settings: tuple[tuple[str, Any], ...], size: int, n: int, seed: int
) -> list:
    """The picture prepared at ``size`` px, then ``n`` random variants with the image ``settings``
    (``(name, value)`` pairs of the spec's image section), as training would show them (cached)."""
    from studio.app.images_view import augmentation_preview as preview

    return preview(path, dict(settings), size, n=n, seed=seed)
