"""Data for the image parts of the pages, as plain Python, numpy and Pillow (no torch, no Streamlit).

- :func:`sample_grid`: the stored thumbnails per class for the Data page's grid;
- :func:`skipped_files`, :func:`class_counts`: the profile's lists as rows for a table;
- :func:`augmentation_preview`: a picture as training would vary it (Train page, live);
- :func:`confusion_matrix` and :func:`mistakes`: what a finished image run logged about its test split
  (Runs page: confusion matrix, gallery of misclassified pictures with predicted and true labels);
- :func:`thumbnail`: a small RGB picture from a path or bytes (Predict page, beside each prediction).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from studio.tracking import CONFUSION_ARTIFACT, PREDICTIONS_ARTIFACT


# --------------------------------------------------------------------------- data set
@dataclass(frozen=True)
class ClassSamples:
    name: str
    count: int
    thumbnails: list[Path]
    """Small PNGs (at most 128 px), the first pictures of the class."""


def sample_grid(dataset_id: str, per_class: int = 8) -> list[ClassSamples]:
    """Each class with its picture count and up to ``per_class`` thumbnail files, in class order."""
    from studio.data import get_dataset, load_profile

    info = get_dataset(dataset_id)
    profile = load_profile(dataset_id)
    return [
        ClassSamples(
            name=c["name"],
            count=int(c["count"]),
            thumbnails=[
                info.path / rel for rel in c.get("samples", [])[:per_class] if (info.path / rel).is_file()
            ],
        )
        for c in profile.get("classes", [])
    ]


def class_counts(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{"class", "pictures", "share"}]`` for a table or bar chart."""
    return [
        {"class": c["name"], "pictures": c["count"], "share": c["share"]} for c in profile.get("classes", [])
    ]


def skipped_files(profile: dict[str, Any]) -> list[dict[str, str]]:
    """``[{"file", "reason"}]``: what the zip held that did not become a picture of the data set,
    including copies and label conflicts that were left out."""
    rows = [{"file": s["file"], "reason": s["reason"]} for s in profile.get("skipped", [])]
    for group in profile.get("duplicates", []):
        rows += [{"file": f, "reason": f"exact copy of {group['kept']} (kept once)"} for f in group["copies"]]
    for group in profile.get("label_conflicts", []):
        classes = ", ".join(group["labels"])
        rows += [
            {"file": f, "reason": f"the same picture is in several classes ({classes})"}
            for f in group["files"]
        ]
    return rows


def thumbnail(source: Any, max_side: int = 160) -> np.ndarray:
    """``uint8 [h, w, 3]``: a picture (path, bytes or PIL image) upright, in RGB, at most ``max_side``
    pixels on a side. Raises ``studio.core.image_io.UnreadableImage`` (a ``ValueError``) for a non-picture."""
    from PIL import Image

    from studio.core.image_io import open_image

    image = open_image(source, draft_size=max_side)
    image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def augmentation_preview(
    source: Any, image_settings: Any, size: int, n: int = 8, seed: int = 0
) -> list[np.ndarray]:
    """The picture prepared at ``size`` px, then ``n`` random variants with the spec's image settings
    (``spec.image`` or its dict), as training would show them: first the unchanged picture, then the
    variants (``uint8 [size, size, 3]`` each)."""
    from studio.core.augment import preview
    from studio.core.image_io import load_square

    pixels = load_square(source, size)
    return [pixels, *preview(pixels, image_settings, n=n, seed=seed)]


# --------------------------------------------------------------------------- finished runs
def _download_json(run_id: str, artifact: str) -> dict[str, Any] | None:
    import tempfile

    from studio import tracking
    from studio.bundle.layout import _quiet_mlflow

    with tempfile.TemporaryDirectory(prefix="studio-artifact-") as tmp, _quiet_mlflow():
        try:
            path = tracking.client().download_artifacts(run_id, artifact, tmp)
        except Exception:  # not logged (a table, a failed run, an older run)
            return None
        return json.loads(Path(path).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ConfusionMatrix:
    classes: list[str]
    counts: list[list[int]]
    """``counts[true][predicted]``: test pictures of class ``true`` that the model called ``predicted``."""

    @property
    def shares(self) -> list[list[float]]:
        """Each row divided by its total (the share of each true class given each prediction)."""
        out = []
        for row in self.counts:
            total = sum(row)
            out.append([v / total if total else 0.0 for v in row])
        return out


def confusion_matrix(run_id: str) -> ConfusionMatrix | None:
    """The test split's confusion matrix of an image run; ``None`` when the run has none."""
    data = _download_json(run_id, CONFUSION_ARTIFACT)
    if not data:
        return None
    return ConfusionMatrix(classes=list(data["classes"]), counts=[list(map(int, r)) for r in data["matrix"]])


@dataclass(frozen=True)
class Mistake:
    path: Path | None
    """The picture in the data set's folder (``None`` when the data set was deleted since)."""
    source: str
    """Its name in the uploaded zip."""
    true_label: str
    predicted: str
    probability: float
    """How sure the model was of its (wrong) answer."""


def test_split_predictions(run_id: str) -> dict[str, Any] | None:
    """Everything logged about the test split: ``{"dataset_id", "classes", "rows": [{"image", "source",
    "label", "predicted", "probability", "probabilities"}]}``; ``None`` when absent."""
    return _download_json(run_id, PREDICTIONS_ARTIFACT)


def mistakes(run_id: str, limit: int = 48) -> list[Mistake]:
    """Misclassified test pictures, the most confidently wrong first."""
    data = test_split_predictions(run_id)
    if not data:
        return []
    from studio.core.errors import DatasetError
    from studio.data import get_dataset

    try:
        folder: Path | None = get_dataset(data["dataset_id"]).path
    except DatasetError:
        folder = None
    wrong = [r for r in data["rows"] if r["predicted"] != r["label"]]
    wrong.sort(key=lambda r: -r["probability"])
    out = []
    for row in wrong[:limit]:
        path = folder / row["image"] if folder is not None else None
        out.append(
            Mistake(
                path=path if path is not None and path.is_file() else None,
                source=row["source"],
                true_label=row["label"],
                predicted=row["predicted"],
                probability=float(row["probability"]),
            )
        )
    return out
