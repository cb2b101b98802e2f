"""Turn what a user typed (a file, ``sample:NAME`` or a data set id) into a stored data set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.core.errors import DatasetError
from studio.data.images import add_image_zip
from studio.data.samples import SAMPLES, add_sample
from studio.data.store import _ID, LIST_HINT, DatasetInfo, add_csv, datasets_root, get_dataset
from studio.modalities.image.ingest import is_zip
from studio.modalities.tabular.ingest import check_size


def add_data_file(
    source: str | Path | bytes,
    name: str | None = None,
    *,
    filename: str | None = None,
    max_bytes: int | None = None,
    progress: Any = None,
) -> DatasetInfo:
    """Add a CSV file or a zip of picture folders (told apart by their first bytes); see
    :func:`~studio.data.store.add_csv` and :func:`~studio.data.images.add_image_zip`."""

    if is_zip(source):
        if max_bytes is not None:
            size = (
                len(source)
                if isinstance(source, (bytes, bytearray, memoryview))
                else Path(source).stat().st_size
            )
            check_size(size, filename or Path(str(source)).name, max_bytes)
        return add_image_zip(source, name, filename=filename, progress=progress)
    from studio.modalities.llm.shapes import looks_like_jsonl

    if looks_like_jsonl(
        _head(source),
        filename or (None if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).name),
    ):
        return add_jsonl(source, name, filename=filename, max_bytes=max_bytes)  # language-model examples
    return add_csv(source, name, filename=filename, max_bytes=max_bytes)


def add_jsonl(
    source: str | Path | bytes,
    name: str | None = None,
    *,
    filename: str | None = None,
    max_bytes: int | None = None,
) -> DatasetInfo:
    """Store a JSONL (or JSON list) file of language-model examples as a table (chat messages as JSON
    text); one plain sentence for a line that is not JSON or examples of no known shape."""
    from studio.data.store import _find_by_hash, check_free_space, content_hash, store_table
    from studio.modalities.llm.shapes import read_jsonl, shape_or_error
    from studio.modalities.tabular.ingest import read_source_bytes

    data, label = read_source_bytes(source, filename, max_bytes=max_bytes)
    if filename is None and not isinstance(source, (bytes, bytearray, memoryview)):
        filename = Path(source).name
    filename = filename or "upload.jsonl"
    digest = content_hash(data)
    existing = _find_by_hash(digest)
    if existing is not None:
        return existing
    check_free_space(2 * len(data), label)
    frame = read_jsonl(data, label)
    shape_or_error(list(frame.columns), f"'{label}'")
    return store_table(
        frame, name or Path(filename).stem, source_file=filename, digest=digest, examples_file=True
    )


def _head(source: str | Path | bytes) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:64])
    with open(Path(source).expanduser(), "rb") as f:
        return f.read(64)


def resolve_dataset(ref: str) -> DatasetInfo:
    """A CSV file or zip of pictures (added to the store, or the copy already there), ``sample:NAME``,
    or a data set id."""
    ref = str(ref).strip()
    if ref.startswith("sample:"):
        return add_sample(ref.removeprefix("sample:"))
    path = Path(ref).expanduser()
    if path.is_file():
        return add_data_file(path)
    if _ID.match(ref) and (datasets_root() / ref / "meta.json").is_file():
        return get_dataset(ref)
    samples = ", ".join(f"sample:{name}" for name in SAMPLES)
    raise DatasetError(
        f"'{ref}' is neither a file, a sample ({samples}) nor a stored data set id; {LIST_HINT}."
    )
