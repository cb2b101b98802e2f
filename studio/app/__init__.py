"""The web app's helpers: what the pages under ``pages/`` call to draw widgets and read results.

``ui`` (session-level helpers, cached reads, the login-aware MLflow link), ``forms`` (the Train form
generated from the run spec, its checks and time guesses), ``runs_view`` and ``images_view`` (what the
Runs and Predict pages show of jobs, MLflow runs and bundles), ``charts`` (pure data-to-Plotly
functions). They never import torch or Lightning at start (``tests/test_import_graph.py``), so the
studio opens at once; the engine never imports them.
"""
