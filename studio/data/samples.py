"""Small sample tables that ship inside scikit-learn (read from its package files, never downloaded)."""

from __future__ import annotations

import pandas as pd

from studio.core.errors import DatasetError
from studio.data.store import DatasetInfo, content_hash, store_table

SAMPLES: dict[str, str] = {
    "wine": "Wine: 178 wines, 13 chemical measurements, 3 grape cultivars to tell apart (classification).",
    "breast_cancer": "Breast cancer: 569 tumour scans, 30 measurements, malignant or benign (classification).",
    "diabetes": "Diabetes: 442 patients, 10 measurements, disease progression after a year (regression).",
}


def sample_table(sample: str) -> pd.DataFrame:
    """The sample as a DataFrame with a readable target column (last)."""
    from sklearn import datasets as sk

    if sample == "wine":
        bunch = sk.load_wine(as_frame=True)
        frame = bunch.frame.copy()
        frame["target"] = [str(bunch.target_names[i]) for i in bunch.target]
    elif sample == "breast_cancer":
        bunch = sk.load_breast_cancer(as_frame=True)
        frame = bunch.frame.drop(columns="target")
        frame["diagnosis"] = [str(bunch.target_names[i]) for i in bunch.target]
    elif sample == "diabetes":
        frame = sk.load_diabetes(as_frame=True, scaled=False).frame.copy()
    else:
        raise DatasetError(f"There is no sample called '{sample}'; choose one of: {', '.join(SAMPLES)}.")
    return frame.reset_index(drop=True)


def add_sample(sample: str) -> DatasetInfo:
    """Store a built-in sample (``wine``, ``breast_cancer`` or ``diabetes``); added once, then reused."""
    sample = sample.strip().lower().replace("-", "_")
    frame = sample_table(sample)
    digest = content_hash(f"sample:{sample}\n".encode() + frame.to_csv(index=False).encode())
    return store_table(frame, sample, source_file=f"sample:{sample}", digest=digest)
