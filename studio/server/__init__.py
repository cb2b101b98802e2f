"""Serving the studio: ``serve`` starts Streamlit and the MLflow UI (one command, loopback or exposed),
``auth`` keeps users, password hashes, the wrong-password limit and idle time, and ``mlflow_proxy`` is
the password-checking proxy in front of the MLflow UI when login is on."""
