"""Work on a trained run's model, run as a job (never in the page's process): ``explain`` (what drives
the model's predictions) and ``compress`` (a smaller, faster copy of it).

Each data kind supplies its own through the data-kind seam: the kind's ``explain_model`` and
``compress_model`` (optional: a kind without one says so in a sentence). Both take the kind's prepared
data (the same split the run trained and tested on), the run's bundle, the options and a ``progress``
callback, and return an :class:`Analysis`. Here the data set is loaded and prepared, the result written
into the job's folder (``result.json``, plus any files) and logged to the run in MLflow (artifacts under
``explain/`` or ``compress/``, metrics as named by the kind).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError
from studio.modalities.analysis import Analysis, AnalysisCancelled, AnalysisRefused

__all__ = ["ACTIONS", "Analysis", "AnalysisCancelled", "AnalysisRefused", "run_analysis"]

ACTIONS = {
    "explain": ("explain_model", "explained"),
    "explain_row": ("explain_row", "explained"),
    "compress": ("compress_model", "made smaller"),
}
"""An action's name -> (the kind's method, the words for a sentence saying it cannot be done)."""

RESULT_FILE = "result.json"


Progress = Callable[[float], None]


def run_analysis(
    action: str,
    spec: Any,
    *,
    bundle: Path | None,
    run_id: str | None,
    options: dict[str, Any],
    out_folder: Path,
    progress: Progress,
) -> str:
    """Do ``action`` on the model in ``bundle`` (trained from ``spec``); returns its sentence."""
    from studio.data import get_dataset, load_profile, load_table
    from studio.modalities import modality_for

    if action not in ACTIONS:
        raise StudioError(f"Unknown action '{action}'; known: {', '.join(ACTIONS)}.")
    method, words = ACTIONS[action]
    kind = modality_for(spec.task)
    work = getattr(kind, method, None)
    if work is None:
        raise StudioError(f"Models of this kind ({kind.name}) cannot be {words} yet.")
    if bundle is None or not Path(bundle).is_file():
        raise StudioError("This run has no saved model to work on (it may have been deleted).")
    started = time.monotonic()
    dataset = get_dataset(spec.data.dataset_id)
    prepared = kind.prepare(spec, dataset, load_table(dataset.id), load_profile(dataset.id))
    progress(0.05)
    out_folder.mkdir(parents=True, exist_ok=True)
    refused = None
    try:
        given = {**options, "run_id": run_id}  # which run it works on (a small version says so)
        analysis: Analysis = work(prepared, Path(bundle), spec, given, progress, out_folder)
    except AnalysisRefused as err:
        refused, analysis = err, err.analysis
    analysis.result.setdefault("seconds", round(time.monotonic() - started, 2))
    analysis.result.setdefault("sentence", analysis.sentence)
    analysis.result["refused"] = refused is not None
    (out_folder / RESULT_FILE).write_text(json.dumps(analysis.result, indent=1, allow_nan=False))
    if run_id and action != "explain_row":  # one row's explanation is the Predict page's, not the run's
        log_to_run(run_id, action, out_folder / RESULT_FILE, analysis)
    if refused is not None:
        raise StudioError(str(refused))
    progress(1.0)
    return analysis.sentence


def log_to_run(run_id: str, action: str, result_file: Path, analysis: Analysis) -> None:
    """The result and files as artifacts under ``<action>/`` of the run, its metrics as the run's."""
    from mlflow.entities import Metric

    from studio import tracking

    client = tracking.client()
    client.log_artifact(run_id, str(result_file), action)
    for path in analysis.files.values():
        if Path(path).is_file():
            client.log_artifact(run_id, str(path), action)
    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(value), now, 0) for key, value in analysis.metrics.items() if math.isfinite(value)
    ]
    if metrics:
        client.log_batch(run_id, metrics=metrics)
