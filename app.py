"""Training Studio: the Streamlit entry point (`streamlit run app.py`, or `python -m studio serve`).

Sets the page config, asks for a user name and password when the studio needs a login (before any
page runs), builds the menu from the page files that exist, and shows where the studio keeps its files
and where the MLflow UI is.
"""

import time

import streamlit as st

from studio import tracking
from studio.app import ui
from studio.core.settings import studio_home
from studio.server import auth

PAGES = (
    ("pages/data.py", "Data", ":material/table_chart:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/runs.py", "Runs", ":material/monitoring:"),
    ("pages/search.py", "Search", ":material/travel_explore:"),
    ("pages/compare.py", "Compare", ":material/compare_arrows:"),
    ("pages/predict.py", "Predict", ":material/online_prediction:"),
)
LOGIN = "studio_login"  # {"user", "fingerprint", "seen"} of the logged-in user, in Session State
NOTICE = "login_notice"
state = st.session_state


def needs_login() -> bool:
    """Whether this studio asks for a password: ``serve`` says so, or Streamlit listens on an address
    other computers can reach (``streamlit run app.py --server.address 0.0.0.0``)."""
    if auth.login_forced():
        return True
    if st.get_option("global.appTest"):
        return False
    return not auth.is_loopback(st.get_option("server.address"))


def idle_seconds() -> float:
    try:
        return auth.idle_timeout_seconds()
    except auth.AuthError:
        return auth.DEFAULT_IDLE_HOURS * 3600


def current_user() -> str | None:
    """The logged-in user, or None; ends a session unused for too long, or whose user was removed or
    given another password."""
    session = state.get(LOGIN)
    if not session:
        return None
    now, limit = time.monotonic(), idle_seconds()
    if now - session["seen"] > limit:
        state[NOTICE] = (
            f"You were logged out after {auth.idle_words(limit)} without use. Log in again to go on."
        )
    elif auth.fingerprint(session["user"]) != session["fingerprint"]:
        state[NOTICE] = "Your login has ended (your user was removed or its password changed). Log in again."
    else:
        session["seen"] = now
        return session["user"]
    del state[LOGIN]
    return None


def client() -> str:
    """Whose wrong passwords count together: the browser's IP address (None on this computer)."""
    address = st.context.ip_address
    return address if isinstance(address, str) and address else "this computer"


def log_in() -> None:
    """The Log in button: check the password (a client with too many wrong ones must wait first)."""
    name, password = state.get("login_user", "").strip(), state.get("login_password", "")
    state["login_password"] = ""
    result = auth.try_login(client(), name, password)
    if result.ok:
        state[LOGIN] = {"user": name, "fingerprint": auth.fingerprint(name), "seen": time.monotonic()}
        state.pop(NOTICE, None)
    else:
        state[NOTICE] = result.message


def log_out() -> None:
    state.clear()  # nothing of this session (choices, uploads) is left for the next person
    state[NOTICE] = "You are logged out."


def login_form() -> None:
    st.title("Training Studio")
    if not auth.list_users():
        st.error(
            "This studio needs a login, and nobody has been given one yet. On the computer that runs it, "
            "add a user with `python -m studio users add NAME`, then reload this page.",
            icon=":material/lock:",
        )
        return
    notice = state.get(NOTICE)
    if notice:
        st.warning(notice, icon=":material/lock:")
    with st.form("login_form"):
        st.text_input("User name", key="login_user", autocomplete="username")
        st.text_input("Password", type="password", key="login_password", autocomplete="current-password")
        st.form_submit_button("Log in", on_click=log_in, key="login_submit", type="primary")


st.set_page_config(page_title="Training Studio", page_icon=":material/neurology:", layout="wide")

available = [(path, title, icon) for path, title, icon in PAGES if ui.page_exists(path)]
pages = [
    st.Page(path, title=title, icon=icon, default=index == 0)
    for index, (path, title, icon) in enumerate(available)
]
login_needed = needs_login()
user = current_user() if login_needed else None
if login_needed and user is None:
    # The pages are declared, hidden, but none runs: the address asked for (e.g. /runs?job=…) is kept
    # and opens once the password is right.
    st.navigation(pages, position="hidden")
    login_form()
    st.stop()

ui.warm_tracking()
navigation = st.navigation(pages)

with st.sidebar:
    if user is not None:
        st.caption(f"Logged in as **{ui.as_text(user)}**.")
        st.button("Log out", on_click=log_out, icon=":material/logout:", key="app_log_out")
    st.caption(f"Your data sets, runs and models are kept in `{studio_home()}`.")
    mlflow_url = ui.mlflow_ui_url()
    if mlflow_url:
        st.link_button(
            "Open MLflow",
            tracking.mlflow_ui_home_url(mlflow_url),
            icon=":material/open_in_new:",
            key="app_mlflow_link",
        )
    else:
        st.caption(
            "This studio runs without the MLflow UI (`python -m studio serve` starts it unless it is given "
            "`--no-mlflow-ui`); its link would appear here."
        )

navigation.run()
