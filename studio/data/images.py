"""Image data sets in the store: a zip of class folders added (checked and unpacked by the image kind's
ingest, :mod:`studio.modalities.image.ingest`, into a staging folder that is renamed into place), and
the stored pictures read back."""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from studio.core.errors import DatasetError
from studio.core.tasks import data_kind
from studio.data.store import (
    DatasetInfo,
    _find_by_hash,
    _new_id,
    _sweep_leftovers,
    check_free_space,
    datasets_root,
    get_dataset,
    load_table,
    publish_staging,
)
from studio.modalities.image.ingest import (
    DEFAULT_LIMITS,
    IMAGE_COLUMN,
    KIND_IMAGES,
    Progress,
    ZipLimits,
    check_archive,
    unpack_image_zip,
)


def add_image_zip(
    source: str | Path | bytes,
    name: str | None = None,
    *,
    filename: str | None = None,
    limits: ZipLimits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> DatasetInfo:
    """Add a zip of class folders (a path, or an upload's bytes named by ``filename``) as an image data set.

    The same zip added again returns the data set already stored. ``progress(fraction, message)`` is
    called while the pictures are checked. Raises :class:`DatasetError` with one sentence when the zip
    cannot be used; nothing is left behind then.
    """
    report = progress or (lambda fraction, message: None)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        filename = filename or "images.zip"
        opened: Any = io.BytesIO(data)
        digest = hashlib.sha256(data).hexdigest()
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise DatasetError(f"There is no file at '{path}'.")
        filename = filename or path.name
        opened = path
        digest = _file_hash(path)
    label = filename
    existing = _find_by_hash(digest)
    if existing is not None:
        return existing
    try:
        zf = zipfile.ZipFile(opened)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DatasetError(f"'{label}' is not a readable zip file ({err}).") from None
    name = name or Path(filename).stem
    with zf:
        report(0.0, "Checking the zip")
        members = check_archive(zf, label, limits)
        check_free_space(sum(m.file_size for m in members), label)
        root = datasets_root()
        _sweep_leftovers(root)
        dataset_id = _new_id(root, name, digest)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{dataset_id}-", dir=root))
        try:
            table, profile = unpack_image_zip(zf, members, staging, label, limits, report)
            info = DatasetInfo(
                id=dataset_id,
                name=name,
                kind=KIND_IMAGES,
                n_rows=len(table),
                n_cols=2,
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                source_file=filename,
                path=root / dataset_id,
            )
            return publish_staging(staging, table, profile, info, digest)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def image_paths(dataset_id: str) -> pd.DataFrame:
    """The data set's pictures: ``path`` (absolute), ``label`` and the stored columns."""
    info = get_dataset(dataset_id)
    if data_kind(info.kind).columns:
        raise DatasetError(f"Data set '{dataset_id}' is a table, not a set of pictures.")
    table = load_table(dataset_id)
    table.insert(0, "path", [str(info.path / rel) for rel in table[IMAGE_COLUMN]])
    return table
