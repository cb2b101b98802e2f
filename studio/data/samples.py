"""Small samples that work offline: three tables shipped with the studio as CSV files
(``studio/data/sample_tables``: scikit-learn's wine, breast cancer and diabetes tables, written once
from its package files, with a readable target column), and scikit-learn's 8×8 handwritten digits
written as 32-pixel pictures in class folders (read from its package files, never downloaded).

The tables are files of the studio's own so that adding one imports pandas only: scikit-learn's import
alone took 1.4-2.5 CPU-s in ``serve``'s first start and in every process that adds a sample.
``tests/datasets/test_store.py`` checks that the files still equal what scikit-learn loads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from studio.core.errors import DatasetError
from studio.data.store import DatasetInfo, content_hash, store_table

SAMPLES: dict[str, str] = {
    "wine": "Wine: 178 wines, 13 chemical measurements, 3 grape cultivars to tell apart (classification).",
    "breast_cancer": "Breast cancer: 569 tumour scans, 30 measurements, malignant or benign (classification).",
    "diabetes": "Diabetes: 442 patients, 10 measurements, disease progression after a year (regression).",
    "digits": "Digits: 1,797 handwritten digits as small pictures, one folder per digit 0–9 (pictures).",
}
PICTURE_SAMPLES = ("digits",)
SAMPLE_TABLES = Path(__file__).with_name("sample_tables")
"""The sample tables, one ``<name>.csv`` each (written by ``sklearn_table(name).to_csv(path, index=False)``)."""
DIGIT_SIDE = 32
"""The side (px) the 8×8 digits are written at: enlarged smoothly, so they look like small scans."""


def sample_table(sample: str) -> pd.DataFrame:
    """The sample as a DataFrame with a readable target column (last)."""
    if sample not in SAMPLES or sample in PICTURE_SAMPLES:
        raise DatasetError(f"There is no sample called '{sample}'; choose one of: {', '.join(SAMPLES)}.")
    return pd.read_csv(SAMPLE_TABLES / f"{sample}.csv")


def sklearn_table(sample: str) -> pd.DataFrame:
    """The same table as :func:`sample_table`, made from scikit-learn's loaders (how the shipped files
    were written; the tests compare the two)."""
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
        raise DatasetError(f"There is no sample table called '{sample}' in scikit-learn's loaders.")
    return frame.reset_index(drop=True)


def digits_zip(per_class: int | None = None) -> bytes:
    """scikit-learn's 1,797 handwritten digits as a zip of class folders (``digits/0/0000.png`` …): each
    8×8 picture of 17 grey levels written dark ink on white, enlarged to :data:`DIGIT_SIDE` px. The same
    bytes every time (fixed dates, fixed order), so the sample is stored once. ``per_class``: only the
    first that many pictures of each digit (tests)."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image
    from sklearn import datasets as sk

    bunch = sk.load_digits()
    buffer = io.BytesIO()
    written: dict[int, int] = {}
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for number, (pixels, digit) in enumerate(zip(bunch.images, bunch.target, strict=True)):
            written[digit] = written.get(digit, 0) + 1
            if per_class is not None and written[digit] > per_class:
                continue
            grey = np.round(255 - pixels * (255 / 16)).astype(np.uint8)  # 0 (paper) … 16 (ink)
            picture = Image.fromarray(grey).resize((DIGIT_SIDE, DIGIT_SIDE), Image.BILINEAR)
            png = io.BytesIO()
            picture.save(png, format="PNG")
            entry = zipfile.ZipInfo(f"digits/{digit}/{number:04d}.png", date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(entry, png.getvalue())
    return buffer.getvalue()


def add_sample(sample: str) -> DatasetInfo:
    """Store a built-in sample (``wine``, ``breast_cancer``, ``diabetes`` or the pictures ``digits``);
    added once, then reused."""
    sample = sample.strip().lower().replace("-", "_")
    if sample in PICTURE_SAMPLES:
        from studio.data.images import add_image_zip

        return add_image_zip(digits_zip(), sample, filename=f"sample:{sample}")
    frame = sample_table(sample)
    digest = content_hash(f"sample:{sample}\n".encode() + frame.to_csv(index=False).encode())
    return store_table(frame, sample, source_file=f"sample:{sample}", digest=digest)
