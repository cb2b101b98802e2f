"""Training Studio: a no-code model training studio (Streamlit + PyTorch Lightning + MLflow).

Importing ``studio`` is cheap: heavy libraries (torch, lightning, mlflow) are imported only by the
modules that train, track or predict, never by the pages or the CLI paths that do not need them.
Importing it hooks torchmetrics' first import (:mod:`studio.core.lean_imports`), so that every process
that trains imports Lightning 3 s faster.
"""

from studio.core import lean_imports

__version__ = "0.1.0"

lean_imports.install()  # torchmetrics without the libraries of metrics the studio never computes
