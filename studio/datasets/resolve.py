"""Turn what a user typed (a file, ``sample:NAME`` or a data set id) into a stored data set."""

from __future__ import annotations

from pathlib import Path

from studio.datasets.samples import SAMPLES, add_sample
from studio.datasets.store import _ID, LIST_HINT, DatasetInfo, add_csv, datasets_root, get_dataset
from studio.errors import DatasetError


def resolve_dataset(ref: str) -> DatasetInfo:
    """A CSV file path (added to the store, or the copy already there), ``sample:NAME``, or a data set id."""
    ref = str(ref).strip()
    if ref.startswith("sample:"):
        return add_sample(ref.removeprefix("sample:"))
    path = Path(ref).expanduser()
    if path.is_file():
        return add_csv(path)
    if _ID.match(ref) and (datasets_root() / ref / "meta.json").is_file():
        return get_dataset(ref)
    samples = ", ".join(f"sample:{name}" for name in SAMPLES)
    raise DatasetError(
        f"'{ref}' is neither a file, a sample ({samples}) nor a stored data set id; {LIST_HINT}."
    )
