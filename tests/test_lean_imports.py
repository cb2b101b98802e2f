"""``studio.core.lean_imports``: a process that imports ``studio`` and then Lightning does not import the
libraries of the torchmetrics metrics the studio never computes, everything torchmetrics exposes is as
before once it is imported, and the metrics the studio does compute give the same numbers as
scikit-learn's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics

from studio.core import lean_imports

ROOT = Path(__file__).resolve().parents[1]

LABELS = [0, 2, 1, 2, 0, 1, 1, 2, 0, 2]
PROBS = np.random.default_rng(0).dirichlet(np.ones(3), size=len(LABELS)).round(4)
TARGET = [3.0, -1.5, 2.0, 7.0, 0.5, 4.0]
PREDICTED = [2.5, -1.0, 2.5, 6.0, 1.0, 3.0]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import studio
    import pytorch_lightning
    import torch, torchmetrics
    import lightning_utilities.core.imports as lu
    import torchmetrics.utilities.imports as flags
    from lightning_utilities.core.imports import RequirementCache
    from studio.core.lean_imports import SKIPPED_FLAGS, _FINDER

    labels, probs, target, predicted = json.loads(sys.argv[1])
    labels, probs = torch.tensor(labels), torch.tensor(probs)
    target, predicted = torch.tensor(target), torch.tensor(predicted)
    values = {
        "accuracy": torchmetrics.Accuracy(task="multiclass", num_classes=3)(probs, labels),
        "f1_macro": torchmetrics.F1Score(task="multiclass", num_classes=3, average="macro")(probs, labels),
        "auroc": torchmetrics.AUROC(task="multiclass", num_classes=3)(probs, labels),
        "mae": torchmetrics.MeanAbsoluteError()(predicted, target),
        "rmse": torchmetrics.MeanSquaredError(squared=False)(predicted, target),
        "r2": torchmetrics.R2Score()(predicted, target),
    }
    try:
        from torchmetrics.functional.text.bert import bert_score
        bert_score(["a"], ["a"])
        skipped = "ran"
    except ModuleNotFoundError as err:
        skipped = str(err)
    print(json.dumps({
        "imported": sorted(m for m in sys.modules if m.split(".")[0] in
                           ("scipy", "torchvision", "transformers", "matplotlib")
                           and m not in ("scipy",) and not m.startswith(("scipy._", "scipy.version"))),
        "flags": {name: [type(flag).__name__, bool(flag), bool(RequirementCache(flag.requirement))]
                  for name, flag in ((n, getattr(flags, n)) for n in SKIPPED_FLAGS)},
        "package_available_back": torchmetrics.package_available is lu.package_available,
        "loader": type(torchmetrics.__spec__.loader).__name__,
        "hook_left": _FINDER in sys.meta_path,
        "values": {name: float(value) for name, value in values.items()},
        "skipped": skipped,
    }))
    """
)


@pytest.fixture(scope="module")
def hooked() -> dict:
    data = json.dumps([LABELS, PROBS.tolist(), TARGET, PREDICTED])
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, data], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_lightning_imports_without_the_skipped_libraries(hooked):
    # scipy itself comes with numpy-based helpers torch uses; its signal module, torchvision's models,
    # transformers and matplotlib are what torchmetrics alone pulled in.
    assert hooked["imported"] == []


def test_torchmetrics_is_as_before_once_imported(hooked):
    for name, (kind, value, fresh) in hooked["flags"].items():
        assert kind == "RequirementCache", name
        assert value == fresh, name  # what a flag made now says: installed or not
    for name in ("_SCIPY_AVAILABLE", "_TORCHVISION_AVAILABLE", "_TRANSFORMERS_GREATER_EQUAL_4_10"):
        assert hooked["flags"][name][1] is True  # installed here, and read so again
    assert hooked["package_available_back"] is True
    assert hooked["loader"] == "SourceFileLoader"  # the wrapper does not stay on the module
    assert hooked["hook_left"] is False


def test_the_studios_metrics_match_scikit_learn(hooked):
    got = hooked["values"]
    predicted_class = PROBS.argmax(axis=1)
    expected = {
        "accuracy": metrics.accuracy_score(LABELS, predicted_class),
        "f1_macro": metrics.f1_score(LABELS, predicted_class, average="macro"),
        "auroc": metrics.roc_auc_score(LABELS, PROBS / PROBS.sum(axis=1, keepdims=True), multi_class="ovr"),
        "mae": metrics.mean_absolute_error(TARGET, PREDICTED),
        "rmse": metrics.root_mean_squared_error(TARGET, PREDICTED),
        "r2": metrics.r2_score(TARGET, PREDICTED),
    }
    assert got == pytest.approx(expected, abs=1e-4)


def test_a_skipped_metric_says_what_it_needs(hooked):
    assert "transformers" in hooked["skipped"]


def test_nothing_is_hooked_when_torchmetrics_came_first(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics", types.ModuleType("torchmetrics"))
    monkeypatch.setattr(sys, "meta_path", [m for m in sys.meta_path if m is not lean_imports._FINDER])
    lean_imports.install()
    assert lean_imports._FINDER not in sys.meta_path
