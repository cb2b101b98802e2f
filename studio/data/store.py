"""The data set store: one folder per data set under ``STUDIO_HOME/datasets/<id>/`` holding
``data.parquet``, ``profile.json`` and ``meta.json``.

A data set is written into a hidden temporary folder beside its final place and renamed into place
when complete, so a crash never leaves half a data set. Adding the same content twice returns the
data set already stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from studio.core.errors import DatasetError
from studio.core.settings import studio_home
from studio.core.tasks import profile_readers
from studio.modalities.tabular.ingest import human_size, parse_table_bytes, read_source_bytes
from studio.modalities.tabular.profile import profile_table

KIND_TABULAR = "tabular"
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
STALE_SECONDS = 3600
LIST_HINT = "`python -m studio datasets list` shows the stored ids"


@dataclass(frozen=True)
class DatasetInfo:
    """A stored data set, as recorded in its ``meta.json``."""

    id: str
    """Short slug and content hash, e.g. ``wine-3f2a9c1b``; safe as a folder name."""
    name: str
    """Readable name (the file name without extension, or the name given)."""
    kind: str
    """``tabular``, or ``images`` for a zip of class folders (:mod:`studio.data.images`)."""
    n_rows: int
    """Rows of a table; pictures of an image data set."""
    n_cols: int
    """Columns of a table; 2 (``image``, ``label``) for an image data set."""
    created: str
    """When it was added, ISO 8601 in UTC."""
    source_file: str
    """The original file name (``sample:NAME`` for built-in samples)."""
    path: Path
    """The data set's folder."""


def datasets_root() -> Path:
    """``STUDIO_HOME/datasets``, created on demand."""
    root = studio_home() / "datasets"
    root.mkdir(parents=True, exist_ok=True)
    return root


def slugify(text: str, fallback: str = "data") -> str:
    """A lower-case, folder-safe short form of a name: ``'My Sales (2024).csv'`` -> ``'my-sales-2024-csv'``."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")
    return slug or fallback


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


DISK_MARGIN_BYTES = 32 * 2**20
"""Free space kept on top of what a data set needs, so adding it never fills the disk to the last byte."""
CSV_SPACE_FACTOR = 2
"""A table needs about twice its file's size while it is stored (the parquet copy and its staging)."""


def check_free_space(needed: int, label: str) -> None:
    """:class:`DatasetError` when the disk holding ``STUDIO_HOME`` has less than ``needed`` bytes (plus
    a margin) free; called before anything of a new data set is written, so a full disk refuses it
    cleanly instead of leaving a half-written file."""
    root = datasets_root()
    free = shutil.disk_usage(root).free
    if free < needed + DISK_MARGIN_BYTES:
        raise DatasetError(
            f"There is not enough free disk space to add '{label}': it needs about {human_size(needed)} "
            f"(plus {human_size(DISK_MARGIN_BYTES)} to spare) and only {human_size(free)} is free where "
            f"the studio keeps its data ({root}). Free some space, for example by deleting data sets you no "
            "longer need, and add it again; nothing was written."
        )


# --------------------------------------------------------------------------- adding
def add_csv(
    source: str | Path | bytes,
    name: str | None = None,
    *,
    filename: str | None = None,
    max_bytes: int | None = None,
) -> DatasetInfo:
    """Add a CSV file (a path, or the raw bytes of an upload named by ``filename``) to the store.

    The same content added again returns the data set already stored. Raises :class:`DatasetError`
    with one sentence when the file cannot be used; nothing is written then.
    """
    data, label = read_source_bytes(source, filename, max_bytes=max_bytes)
    if filename is None and not isinstance(source, (bytes, bytearray, memoryview)):
        filename = Path(source).name
    filename = filename or "upload.csv"
    digest = content_hash(data)
    existing = _find_by_hash(digest)
    if existing is not None:
        return existing
    check_free_space(CSV_SPACE_FACTOR * len(data), label)
    df = parse_table_bytes(data, label)
    return store_table(df, name or Path(filename).stem, source_file=filename, digest=digest)


def store_table(
    df: pd.DataFrame,
    name: str,
    *,
    source_file: str,
    digest: str,
    kind: str = KIND_TABULAR,
    examples_file: bool = False,
) -> DatasetInfo:
    """Profile ``df`` and write it as a new data set (or return the one with the same ``digest``).
    A table of language-model examples (``examples_file``: it came as JSONL) is read as such too."""
    existing = _find_by_hash(digest)
    if existing is not None:
        return existing
    root = datasets_root()
    _sweep_leftovers(root)
    dataset_id = _new_id(root, name, digest)
    final = root / dataset_id
    info = DatasetInfo(
        id=dataset_id,
        name=name,
        kind=kind,
        n_rows=int(len(df)),
        n_cols=int(len(df.columns)),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        source_file=source_file,
        path=final,
    )
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{dataset_id}-", dir=root))
    try:
        table = df.copy(deep=False)  # (the stored file carries no reading notes)
        table.attrs = {}
        # The table is written while it is profiled: Arrow's writer lets go of Python's lock, so the two
        # share the cores (on a million rows this hides most of the writing time).
        with ThreadPoolExecutor(max_workers=1) as pool:
            written = pool.submit(write_table, table, staging / "data.parquet")
            try:
                profile = profile_table(df)
                for read in profile_readers():  # a kind's own reading (language-model examples)
                    read(df, profile, examples_file=examples_file)
            finally:
                written.result()
        return publish_staging(staging, None, profile, info, digest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return info


def publish_staging(
    staging: Path, table: pd.DataFrame | None, profile: dict[str, Any], info: DatasetInfo, digest: str
) -> DatasetInfo:
    """Write the data set's files into its staging folder (``table`` is ``None`` when ``data.parquet``
    is there already) and rename it into place in one step, so nobody ever sees half a data set. When
    another process stored the same content a moment ago, that data set is returned instead."""
    if table is not None:
        write_table(table, staging / "data.parquet")
    _write_json(staging / "profile.json", profile)
    _write_json(staging / "meta.json", _meta(info, digest))
    try:
        os.rename(staging, info.path)
    except OSError:
        winner = _find_by_hash(digest)
        if winner is None:
            raise
        return winner
    return info


DICTIONARY_SAMPLE_ROWS = 10_000
"""Rows (evenly spaced) on which :func:`write_table` judges whether a fractional-number column repeats
its values enough to be worth a dictionary."""
DICTIONARY_MAX_SHARE = 0.2
"""A fractional-number column gets a dictionary when under this share of its sampled values differ."""


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write a data set's rows as Parquet, each column encoded for what it holds.

    Text, whole numbers, yes/no and fractional numbers that repeat a few values get a dictionary and
    snappy compression (small files, read fast). Fractional numbers that mostly differ, measurements,
    are stored plain: building a dictionary for them cost about 1.4 s per million rows of 50 columns, a
    third of adding the table, and Arrow drops it anyway once it outgrows a page."""
    import pyarrow as pa
    from pyarrow import parquet

    arrow = pa.Table.from_pandas(df, preserve_index=False)
    plain = [
        name
        for name in arrow.column_names
        if pa.types.is_floating(arrow.schema.field(name).type) and _mostly_different(arrow.column(name))
    ]
    kept = [name for name in arrow.column_names if name not in set(plain)]
    parquet.write_table(
        arrow,
        path,
        use_dictionary=kept,
        compression={name: "none" if name in plain else "snappy" for name in arrow.column_names},
    )


def _mostly_different(column: Any) -> bool:
    """Whether more than :data:`DICTIONARY_MAX_SHARE` of a column's sampled present values differ."""
    import pyarrow.compute as pc

    step = max(1, len(column) // DICTIONARY_SAMPLE_ROWS)
    sample = column.combine_chunks()[::step].drop_null()
    return len(sample) > 0 and len(pc.unique(sample)) > DICTIONARY_MAX_SHARE * len(sample)


def _sweep_leftovers(root: Path) -> None:
    """Remove staging and trash folders that a crashed process left behind (older than an hour)."""
    cutoff = time.time() - STALE_SECONDS
    for entry in root.iterdir():
        if entry.name.startswith((".tmp-", ".trash-")):
            try:
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)
            except OSError:
                continue


def _new_id(root: Path, name: str, digest: str) -> str:
    slug = slugify(name)
    for length in (8, 12, 16, 64):
        candidate = f"{slug}-{digest[:length]}"
        if not (root / candidate).exists():
            return candidate
    raise DatasetError(f"A data set folder for '{name}' already exists; delete it and add the file again.")


def _meta(info: DatasetInfo, digest: str) -> dict[str, Any]:
    meta = asdict(info)
    meta.pop("path")
    meta["content_hash"] = digest
    return meta


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8")


# --------------------------------------------------------------------------- reading
def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _info(folder: Path, meta: dict[str, Any]) -> DatasetInfo:
    known = {f.name for f in fields(DatasetInfo)} - {"path"}
    return DatasetInfo(**{key: meta[key] for key in known}, path=folder)


def _stored() -> list[tuple[DatasetInfo, dict[str, Any]]]:
    found = []
    for folder in datasets_root().iterdir():
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        meta = _read_meta(folder)
        if meta is None:
            continue
        try:
            found.append((_info(folder, meta), meta))
        except (KeyError, TypeError):
            continue
    return found


def _find_by_hash(digest: str) -> DatasetInfo | None:
    for info, meta in _stored():
        if meta.get("content_hash") == digest:
            return info
    return None


def list_datasets() -> list[DatasetInfo]:
    """Every stored data set, newest first."""

    def newest(info: DatasetInfo) -> tuple[str, int]:
        try:
            return info.created, (info.path / "meta.json").stat().st_mtime_ns
        except OSError:
            return info.created, 0

    return sorted((info for info, _ in _stored()), key=newest, reverse=True)


def _folder(dataset_id: str) -> Path:
    if not isinstance(dataset_id, str) or not _ID.match(dataset_id):
        raise DatasetError(f"'{dataset_id}' is not a data set id; {LIST_HINT}.")
    folder = datasets_root() / dataset_id
    if not (folder / "meta.json").is_file():
        raise DatasetError(f"There is no data set with id '{dataset_id}'; {LIST_HINT}.")
    return folder


def get_dataset(dataset_id: str) -> DatasetInfo:
    """The stored data set with this id; :class:`DatasetError` if there is none."""
    folder = _folder(dataset_id)
    meta = _read_meta(folder)
    if meta is None:
        raise DatasetError(f"Data set '{dataset_id}' is damaged (its meta.json cannot be read); delete it.")
    return _info(folder, meta)


def load_table(dataset_id: str) -> pd.DataFrame:
    """The data set's rows, as stored in ``data.parquet`` (for images: one row per picture, with its
    path relative to the data set's folder in ``image`` and its class in ``label``)."""
    folder = _folder(dataset_id)
    try:
        return pd.read_parquet(folder / "data.parquet")
    except (OSError, ValueError) as err:
        raise DatasetError(
            f"Data set '{dataset_id}' cannot be read ({err}); delete it and add it again."
        ) from None


def load_profile(dataset_id: str) -> dict[str, Any]:
    """The data set's profile, as stored in ``profile.json``."""
    folder = _folder(dataset_id)
    try:
        return json.loads((folder / "profile.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DatasetError(
            f"Data set '{dataset_id}' has no readable profile; delete it and add it again."
        ) from None


def move_to_trash(dataset_id: str) -> Path:
    """Rename the data set's folder away (it disappears from the store at once) and return where it went;
    the caller deletes that folder. Knows nothing of jobs: :func:`studio.jobs.delete_dataset` is the
    delete that refuses while a job trains on the data set."""
    folder = _folder(dataset_id)
    trash = folder.parent / f".trash-{dataset_id}-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        raise DatasetError(f"There is no data set with id '{dataset_id}'; {LIST_HINT}.") from None
    return trash
