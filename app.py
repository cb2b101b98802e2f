"""Training Studio: the Streamlit entry point (`streamlit run app.py`, or `python -m studio serve`).

Sets the page config, builds the menu from the page files that exist, and shows where the studio keeps
its files and where the MLflow UI is.
"""

import streamlit as st

from studio import tracking, ui
from studio.settings import studio_home

PAGES = (
    ("pages/data.py", "Data", ":material/table_chart:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/runs.py", "Runs", ":material/monitoring:"),
    ("pages/compare.py", "Compare", ":material/compare_arrows:"),
    ("pages/predict.py", "Predict", ":material/online_prediction:"),
)

st.set_page_config(page_title="Training Studio", page_icon=":material/neurology:", layout="wide")
ui.warm_tracking()

available = [(path, title, icon) for path, title, icon in PAGES if ui.page_exists(path)]
navigation = st.navigation(
    [
        st.Page(path, title=title, icon=icon, default=index == 0)
        for index, (path, title, icon) in enumerate(available)
    ]
)

with st.sidebar:
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
            "The MLflow UI link appears here when the studio is started with `python -m studio serve`."
        )

navigation.run()
