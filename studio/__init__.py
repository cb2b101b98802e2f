"""Training Studio: a no-code model training studio (Streamlit + PyTorch Lightning + MLflow).

Importing ``studio`` is cheap: heavy libraries (torch, lightning, mlflow) are imported only by the
modules that train, track or predict, never by the pages or the CLI paths that do not need them.
"""

__version__ = "0.1.0"
