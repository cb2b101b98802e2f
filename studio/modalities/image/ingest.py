"""Image data sets: a zip of class folders, checked safely, decoded fully and profiled (the data set
store, ``studio.data.images``, writes the result into place; nothing here knows the store).

A zip holds one folder per class (``cats/001.jpg``), possibly under one top folder (``pets/cats/001.jpg``).
Before anything is written the archive's directory is checked: no path may leave the data set's folder
(``../``, absolute paths, drive letters), no symbolic links, and limits on the number of entries, the
total unpacked size and the compression ratio stop zip bombs. Then every entry is streamed to disk in
small chunks while the bytes it actually produces are counted: an entry that produces more than its
directory declares (a zip that lies about its sizes), or more than the per-file or total limit, stops the
unpacking at once and the zip is refused, so memory and disk stay bounded whatever the headers say. Each
picture is then decoded fully from its file and kept when it is usable; junk (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``), non-images and damaged files are
skipped and listed with their reason. Exact copies are found by content hash: copies inside one class
are kept once, copies that sit in two classes (label conflicts) are left out.

Stored layout under ``STUDIO_HOME/datasets/<id>/``: ``images/<nnn>/<nnnnn>.<ext>`` (the original bytes;
folders are numbered, never named after anything in the zip), ``thumbs/`` (small PNG samples per class),
``data.parquet`` (one row per picture: ``image`` path relative to the folder, ``label``, size, hash,
original name), ``profile.json`` and ``meta.json``.
"""

from __future__ import annotations

import copy
import hashlib
import stat
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from studio.core.errors import DatasetError
from studio.core.image_io import UnreadableImage, open_image, thumbnail_png
from studio.modalities.tabular.ingest import human_size

KIND_IMAGES = "images"
IMAGE_COLUMN = "image"
LABEL_COLUMN = "label"
SAMPLES_PER_CLASS = 8
THUMB_SIDE = 128
FEW_IMAGES = 10
# Class names that say left and right matter: a mirrored picture of them shows another class or nothing.
HANDED_WORDS = ("left", "right", "arrow", "letter", "digit", "character", "text", "number", "sign")
IMBALANCE_RATIO = 5
TINY_SIDE = 32
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "._.ds_store"}
JUNK_FOLDERS = {"__macosx", ".git", ".svn"}
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".ico")
"""File names predicted as pictures from a folder or zip (a data set's zip is judged by content instead)."""
EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "WEBP": ".webp",
    "PPM": ".ppm",
    "ICO": ".ico",
    "MPO": ".jpg",
}

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ZipLimits:
    """What a zip may hold before it is refused: checked on its directory before anything is written, and
    again on the bytes each entry actually produces while it is unpacked."""

    max_entries: int = 200_000
    max_total_bytes: int = 8 * 2**30
    max_entry_bytes: int = 256 * 2**20
    max_ratio: float = 100.0
    """Unpacked / packed size, checked per entry above ``ratio_floor_bytes`` and for the whole archive.
    Pictures hardly compress (ratio ~1); text and blank pixels compress 10–50×; bombs 1000× and more."""
    ratio_floor_bytes: int = 2**20


DEFAULT_LIMITS = ZipLimits()


# --------------------------------------------------------------------------- archive checks
def is_zip(source: str | Path | bytes) -> bool:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:4]) == b"PK\x03\x04"
    try:
        with open(source, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _is_symlink(member: zipfile.ZipInfo) -> bool:
    return member.create_system == 3 and stat.S_ISLNK(member.external_attr >> 16)


def _unsafe_reason(name: str) -> str | None:
    if "\x00" in name:
        return "a name with a NUL character"
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "a path that climbs out of its folder (..)"
    return None


def check_archive(
    zf: zipfile.ZipFile, label: str, limits: ZipLimits = DEFAULT_LIMITS
) -> list[zipfile.ZipInfo]:
    """The archive's file entries, or :class:`DatasetError` naming the first rule it breaks."""
    members = zf.infolist()
    if len(members) > limits.max_entries:
        raise DatasetError(
            f"'{label}' was refused: it holds {len(members):,} entries, over the limit of "
            f"{limits.max_entries:,} entries per zip; split it into smaller zips."
        )
    total = packed = 0
    for member in members:
        reason = _unsafe_reason(member.filename)
        if reason:
            raise DatasetError(
                f"'{label}' was refused: entry '{member.filename}' has {reason}, which could write outside "
                "the data set's folder; nothing was unpacked."
            )
        if _is_symlink(member):
            raise DatasetError(
                f"'{label}' was refused: entry '{member.filename}' is a symbolic link, which could point "
                "outside the data set's folder; nothing was unpacked. Zip the pictures themselves."
            )
        if member.is_dir():
            continue
        if member.file_size > limits.max_entry_bytes:
            raise DatasetError(
                f"'{label}' was refused: entry '{member.filename}' unpacks to {human_size(member.file_size)}, "
                f"over the limit of {human_size(limits.max_entry_bytes)} per file (size limit)."
            )
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise DatasetError(
                f"'{label}' was refused: entry '{member.filename}' is compressed {ratio:,.0f}:1, over the "
                f"compression ratio limit of {limits.max_ratio:,.0f}:1 (a zip bomb?); nothing was unpacked."
            )
        total += member.file_size
        packed += member.compress_size
        if total > limits.max_total_bytes:
            raise DatasetError(
                f"'{label}' was refused: it unpacks to more than {human_size(limits.max_total_bytes)}, over "
                "the total size limit; nothing was unpacked. Split it or use smaller pictures."
            )
    if total > limits.ratio_floor_bytes and total / max(packed, 1) > limits.max_ratio:
        raise DatasetError(
            f"'{label}' was refused: it is compressed {total / max(packed, 1):,.0f}:1 overall, over the "
            f"compression ratio limit of {limits.max_ratio:,.0f}:1 (a zip bomb?); nothing was unpacked."
        )
    return [m for m in members if not m.is_dir()]


CHUNK_BYTES = 2**20
"""Entries are unpacked this many bytes at a time: memory stays bounded however big an entry claims to be."""


class _Damaged(Exception):
    """The entry produced fewer bytes than its directory declares, or bytes that fail its checksum."""


def _entry_chunks(
    zf: zipfile.ZipFile, member: zipfile.ZipInfo, label: str, limits: ZipLimits, unpacked_so_far: int = 0
) -> Iterator[bytes]:
    """The entry's bytes, ``CHUNK_BYTES`` at a time, counting the bytes it actually produces.

    Unpacking stops as soon as the entry produces more than the smallest of: what its directory
    declares, the per-file limit, and what is left of the total limit; the zip is then refused with
    :class:`DatasetError` naming that limit. ``zipfile`` itself cuts an entry at its declared size and
    then reports a checksum error, so the entry is opened with room for one chunk more: a lie shows as
    what it is. An entry that ends short of its declared size raises :class:`_Damaged`."""
    total_left = limits.max_total_bytes - unpacked_so_far
    bound = min(member.file_size, limits.max_entry_bytes, total_left)
    probe = copy.copy(member)
    probe.file_size = bound + CHUNK_BYTES + 1
    produced = 0
    with zf.open(probe) as src:
        while chunk := src.read(CHUNK_BYTES):
            produced += len(chunk)
            if produced > bound:
                raise DatasetError(_over_limit(label, member, bound, limits, total_left))
            yield chunk
    if produced != member.file_size:
        raise _Damaged(
            f"it is cut short inside the zip ({produced:,} of the {member.file_size:,} bytes it declares)"
        )


def _stream_member(
    zf: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    target: Path,
    label: str,
    limits: ZipLimits,
    unpacked_so_far: int,
) -> tuple[int, str]:
    """Unpack one entry into ``target`` (see :func:`_entry_chunks`); returns its size and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    with open(target, "wb") as out:
        for chunk in _entry_chunks(zf, member, label, limits, unpacked_so_far):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def named_like_picture(name: str) -> bool:
    """Whether a file's path (``cats/1.jpg``; ``\\`` or ``/``) names a picture to predict: a picture
    file name, not a system file (see :func:`is_junk`)."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and not is_junk(parts) and parts[-1].lower().endswith(PICTURE_SUFFIXES)


def zip_pictures(
    zf: zipfile.ZipFile, label: str, limits: ZipLimits = DEFAULT_LIMITS
) -> Iterator[tuple[str, bytes]]:
    """``(path, bytes)`` of each picture-named file of a zip (to predict), checked like a data set's
    zip (entry count and sizes, counted as unpacked); system files and other files are skipped."""
    for member in check_archive(zf, label, limits):
        if named_like_picture(member.filename):
            yield member.filename, _read_member(zf, member, limits.max_entry_bytes, label)


def _read_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int, label: str | None = None) -> bytes:
    """The entry's bytes in memory (for predicting from a zip), never more than it declares nor than
    ``limit``, counted as they are unpacked (see :func:`_entry_chunks`)."""
    limits = ZipLimits(max_entry_bytes=limit)
    try:
        return b"".join(_entry_chunks(zf, member, label or Path(str(zf.filename)).name, limits))
    except _Damaged as err:
        raise zipfile.BadZipFile(f"'{member.filename}': {err}") from None


def _over_limit(label: str, member: zipfile.ZipInfo, bound: int, limits: ZipLimits, total_left: int) -> str:
    if bound == member.file_size:
        return (
            f"'{label}' was refused: entry '{member.filename}' unpacks to more than the "
            f"{human_size(bound)} its zip directory declares, so the zip lies about its sizes (a zip "
            "bomb?); unpacking stopped at that limit and nothing was kept."
        )
    if bound == limits.max_entry_bytes:
        return (
            f"'{label}' was refused: entry '{member.filename}' unpacks to more than "
            f"{human_size(limits.max_entry_bytes)}, the limit per file (size limit); unpacking stopped "
            "there and nothing was kept."
        )
    return (
        f"'{label}' was refused: the zip unpacks to more than {human_size(limits.max_total_bytes)}, the "
        "total size limit; unpacking stopped there and nothing was kept. Split it or use smaller pictures."
    )


# --------------------------------------------------------------------------- layout
def is_junk(parts: tuple[str, ...]) -> bool:
    """System files and folders a zip or folder carries besides the pictures (``__MACOSX/``,
    ``.DS_Store``, ``Thumbs.db``, hidden files): never pictures, never reported as unusable."""
    name = parts[-1].lower()
    return (
        any(p.lower() in JUNK_FOLDERS for p in parts[:-1])
        or name in JUNK_NAMES
        or name.startswith("._")
        or name.startswith(".")
    )


def class_layout(names: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``entry -> class name`` for the pictures' folders, and ``entry -> reason`` for entries outside any.

    The class is the first folder; while every entry sits in one common top folder with folders below
    it (``pets/cats/1.jpg``), that folder is skipped. Deeper folders belong to their class (``cats/indoor/1.jpg`` is a cat).
    """
    split = {name: PurePosixPath(name.replace("\\", "/")).parts for name in names}
    paths = list(split.values())
    strip = 0
    while (
        paths
        and all(len(p) >= strip + 2 for p in paths)
        and len({p[strip] for p in paths}) == 1
        and any(len(p) >= strip + 3 for p in paths)
    ):
        strip += 1
    classes, outside = {}, {}
    for name, parts in split.items():
        parts = parts[strip:]
        if len(parts) < 2:
            outside[name] = "it is not inside a class folder (put each picture in its class's folder)"
        else:
            classes[name] = parts[0]
    return classes, outside


# --------------------------------------------------------------------------- adding
@dataclass
class _Picture:
    entry: str
    label: str
    relative: str
    digest: str
    width: int
    height: int
    mode: str
    format: str
    size: int


def unpack_image_zip(
    zf: zipfile.ZipFile,
    members: list[zipfile.ZipInfo],
    staging: Path,
    label: str,
    limits: ZipLimits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Unpack the checked ``members`` of a zip of class folders (:func:`check_archive`) into ``staging``:
    the usable pictures under ``images/``, copies left out, thumbnails under ``thumbs/``. Returns the
    table (one row per picture) and the profile; the data set store (``studio.data.images``) writes them.

    ``progress(fraction, message)`` is called while the pictures are checked. Raises
    :class:`DatasetError` with one sentence when the zip holds no two classes of usable pictures.
    """
    report = progress or (lambda fraction, message: None)
    pictures, skipped = _unpack_pictures(zf, members, staging, label, limits, report)
    pictures, duplicates, conflicts = _deduplicate(pictures, staging)
    _require_classes(pictures, skipped, label)
    report(0.9, "Saving the data set")
    table = pd.DataFrame(
        {
            IMAGE_COLUMN: [p.relative for p in pictures],
            LABEL_COLUMN: [p.label for p in pictures],
            "width": [p.width for p in pictures],
            "height": [p.height for p in pictures],
            "mode": [p.mode for p in pictures],
            "format": [p.format for p in pictures],
            "bytes": [p.size for p in pictures],
            "sha256": [p.digest for p in pictures],
            "source": [p.entry for p in pictures],
        }
    )
    samples = _write_thumbnails(staging, table)
    return table, image_profile(table, skipped, duplicates, conflicts, samples)


def _require_classes(pictures: list[_Picture], skipped: list[tuple[str, str]], label: str) -> None:
    classes = Counter(p.label for p in pictures)
    if not pictures:
        reasons = Counter(reason for _, reason in skipped)
        why = "; ".join(f"{n} × {reason}" for reason, n in reasons.most_common(3)) or "the zip is empty"
        raise DatasetError(f"'{label}' holds no usable pictures ({why}).")
    if len(classes) < 2:
        only = next(iter(classes))
        raise DatasetError(
            f"'{label}' has pictures of one class only ('{only}'); put each class in its own folder, "
            "e.g. cats/001.jpg and dogs/001.jpg, and zip the folders together."
        )


def _unpack_pictures(
    zf: zipfile.ZipFile,
    members: list[zipfile.ZipInfo],
    staging: Path,
    label: str,
    limits: ZipLimits,
    report: Progress,
) -> tuple[list[_Picture], list[tuple[str, str]]]:
    """Stream every candidate entry to a file in ``staging`` (bounded, see :func:`_stream_member`),
    decode it, and keep the usable ones under ``staging/images/`` with names of our own (numbered class
    folders and files), so nothing can land anywhere else."""
    skipped: list[tuple[str, str]] = []
    candidates = []
    for member in members:
        parts = PurePosixPath(member.filename.replace("\\", "/")).parts
        if not parts or is_junk(parts):
            skipped.append((member.filename, "system file, not a picture"))
        else:
            candidates.append(member)
    classes, outside = class_layout([m.filename for m in candidates])
    skipped += list(outside.items())
    class_names = sorted(set(classes.values()), key=_natural_key)
    folder_of = {name: f"{i:03d}" for i, name in enumerate(class_names)}
    pictures: list[_Picture] = []
    unpacked = 0
    todo = [m for m in candidates if m.filename in classes]
    incoming = staging / "incoming.part"
    for i, member in enumerate(todo):
        if i % 25 == 0:
            report(0.05 + 0.85 * i / max(len(todo), 1), f"Checking pictures: {i:,} of {len(todo):,}")
        try:
            size, digest = _stream_member(zf, member, incoming, label, limits, unpacked)
        except DatasetError:
            raise
        except _Damaged as err:
            skipped.append((member.filename, str(err)))
            continue
        except OSError as err:
            if err.errno is not None:
                raise  # the disk, not the zip: no space left, no permission
            skipped.append((member.filename, _unreadable_entry(err)))
            continue
        except Exception as err:  # damaged entry, encrypted, or an unsupported compression method
            skipped.append((member.filename, _unreadable_entry(err)))
            continue
        unpacked += size
        try:
            image = open_image(incoming)
        except UnreadableImage as err:
            skipped.append((member.filename, str(err)))
            continue
        with image:
            width, height = image.size
        mode, image_format = _original_mode_and_format(incoming)
        class_name = classes[member.filename]
        relative = f"images/{folder_of[class_name]}/{i:06d}{EXTENSIONS.get(image_format, '.img')}"
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        incoming.replace(target)
        pictures.append(
            _Picture(
                entry=member.filename,
                label=class_name,
                relative=relative,
                digest=digest,
                width=width,
                height=height,
                mode=mode,
                format=image_format,
                size=size,
            )
        )
    incoming.unlink(missing_ok=True)
    return pictures, skipped


def _unreadable_entry(err: Exception) -> str:
    text = str(err).lower()
    if "encrypted" in text or "password" in text:
        return "it is password-protected in the zip"
    if isinstance(err, NotImplementedError) or "compression" in text:
        return "it is packed with a compression method that cannot be read (use ordinary zip compression)"
    return f"it is damaged inside the zip ({str(err).strip() or type(err).__name__})"


def _original_mode_and_format(path: Path) -> tuple[str, str]:
    from PIL import Image

    with Image.open(path) as image:
        return image.mode, image.format or ""


def _deduplicate(
    pictures: list[_Picture], staging: Path
) -> tuple[list[_Picture], list[dict[str, Any]], list[dict[str, Any]]]:
    """Keep one picture per content; copies within a class are listed as duplicates, copies across
    classes as label conflicts (all left out: their class is ambiguous)."""
    groups: dict[str, list[_Picture]] = defaultdict(list)
    for picture in pictures:
        groups[picture.digest].append(picture)
    kept, duplicates, conflicts = [], [], []
    for picture in pictures:
        group = groups[picture.digest]
        labels = sorted({p.label for p in group}, key=_natural_key)
        if len(labels) > 1:
            if picture is group[0]:
                conflicts.append({"files": [p.entry for p in group], "labels": labels})
        elif picture is group[0]:
            kept.append(picture)
            if len(group) > 1:
                duplicates.append(
                    {"kept": picture.entry, "copies": [p.entry for p in group[1:]], "label": labels[0]}
                )
            continue
        (staging / picture.relative).unlink()
    return kept, duplicates, conflicts


def _write_thumbnails(staging: Path, table: pd.DataFrame) -> dict[str, list[str]]:
    samples: dict[str, list[str]] = {}
    for label, group in table.groupby(LABEL_COLUMN, sort=False):
        paths = []
        for i, relative in enumerate(group[IMAGE_COLUMN].head(SAMPLES_PER_CLASS)):
            thumb = f"thumbs/{PurePosixPath(relative).parent.name}/{i:02d}.png"
            (staging / thumb).parent.mkdir(parents=True, exist_ok=True)
            with open_image(staging / relative, draft_size=THUMB_SIDE) as image:
                (staging / thumb).write_bytes(thumbnail_png(image, THUMB_SIDE))
            paths.append(thumb)
        samples[str(label)] = paths
    return samples


def _natural_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


# --------------------------------------------------------------------------- profile
def _warning(code: str, column: str | None, message: str, action: str) -> dict[str, Any]:
    return {"code": code, "column": column, "message": message, "action": action}


def _stats(values: pd.Series) -> dict[str, float]:
    return {"min": int(values.min()), "median": float(values.median()), "max": int(values.max())}


def image_profile(
    table: pd.DataFrame,
    skipped: list[tuple[str, str]],
    duplicates: list[dict[str, Any]],
    conflicts: list[dict[str, Any]],
    samples: dict[str, list[str]],
) -> dict[str, Any]:
    """The profile of an image data set (JSON-safe). It carries the keys a table's profile has
    (``n_rows``, ``columns``, ``suggested_target`` …) so shared code keeps working, plus:
    ``kind: "images"``, ``n_images``, ``n_classes``, ``classes`` (name, count, share, sample thumbnails),
    ``sizes`` (width/height min/median/max, ``short_side_median``), ``modes``, ``formats``, ``skipped``
    (file and reason), ``duplicates`` and ``label_conflicts``."""
    counts = table[LABEL_COLUMN].value_counts()
    names = sorted(counts.index, key=_natural_key)
    n = len(table)
    short = table[["width", "height"]].min(axis=1)
    classes = [
        {
            "name": str(c),
            "count": int(counts[c]),
            "share": float(counts[c] / n),
            "samples": samples.get(str(c), []),
        }
        for c in names
    ]
    top = [[str(c), int(counts[c])] for c in counts.index[:10]]
    profile: dict[str, Any] = {
        "kind": KIND_IMAGES,
        "n_rows": n,
        "n_cols": 2,
        "n_images": n,
        "n_classes": len(names),
        "duplicate_rows": 0,
        "classes": classes,
        "sizes": {
            "width": _stats(table["width"]),
            "height": _stats(table["height"]),
            "short_side_median": float(short.median()),
            "tiny": int((short < TINY_SIDE).sum()),
        },
        "modes": {str(k): int(v) for k, v in table["mode"].value_counts().items()},
        "formats": {str(k): int(v) for k, v in table["format"].value_counts().items()},
        "skipped": [{"file": file, "reason": reason} for file, reason in skipped],
        "duplicates": duplicates,
        "label_conflicts": conflicts,
        "columns": [
            {
                "name": IMAGE_COLUMN,
                "kind": "image",
                "dtype": "str",
                "missing": 0,
                "missing_share": 0.0,
                "distinct": n,
                "examples": [str(v) for v in table["source"].head(5)],
                "stats": {},
            },
            {
                "name": LABEL_COLUMN,
                "kind": "categorical",
                "dtype": "str",
                "missing": 0,
                "missing_share": 0.0,
                "distinct": len(names),
                "examples": [str(c) for c in names[:5]],
                "stats": {"top": top},
            },
        ],
        "suggested_target": LABEL_COLUMN,
        "suggested_task": "image_classification",
        "warnings": [],
    }
    profile["warnings"] = _image_warnings(profile)
    return profile


def _listing(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def mirroring_changes_meaning(profile: dict[str, Any]) -> str | None:
    """Why mirroring these pictures left–right would change what they show (``None``: it would not, as
    far as the class names tell): most classes are single characters (digits, letters), or a class name
    speaks of left/right, arrows, letters, digits or text."""
    names = [str(c["name"]).strip() for c in profile.get("classes", [])]
    characters = [name for name in names if len(name) == 1 and name.isalnum()]
    if len(names) >= 2 and len(characters) * 2 >= len(names):
        return f"the classes look like characters ({_listing(characters, 4)})"
    for name in names:
        words = name.lower().replace("-", " ").replace("_", " ").split()
        if any(word in HANDED_WORDS or word.removesuffix("s") in HANDED_WORDS for word in words):
            return f"the class '{name}' suggests that left and right matter"
    return None


def image_defaults(profile: dict[str, Any]) -> dict[str, Any]:
    """Picture settings whose starting value depends on the data set (dotted path → value): mirroring
    starts off when it would change what the pictures show, on otherwise (the spec's default).

    The network stays the small CNN whatever the set's size: the pretrained EfficientNet-Lite0 (offline,
    in the catalogue) was measured behind it on a small set (400 of scikit-learn's digits: 0.80 test
    accuracy with its last layer trained, 5–8× slower, against the small CNN's 0.87), so the studio does
    not suggest it by default."""
    return {"image.horizontal_flip": mirroring_changes_meaning(profile) is None}


def _image_warnings(profile: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    mirroring = mirroring_changes_meaning(profile)
    if mirroring:
        found.append(
            _warning(
                "mirroring_changes_meaning",
                LABEL_COLUMN,
                f"Mirroring these pictures left–right would change what they show: {mirroring} (a mirrored "
                "'b' reads as a 'd').",
                "So 'Mirror left–right' starts off for this data set; turn it on only if a mirrored picture "
                "still shows the same class.",
            )
        )
    classes = profile["classes"]
    few = [c for c in classes if c["count"] < FEW_IMAGES]
    if few:
        names = _listing([f"'{c['name']}' ({c['count']})" for c in few])
        found.append(
            _warning(
                "few_images",
                LABEL_COLUMN,
                f"Some classes have fewer than {FEW_IMAGES} pictures: {names}.",
                "The model can hardly learn them and their scores will be luck; add pictures (50 or more per "
                "class is a good start) or start from a pretrained network.",
            )
        )
    counts = [c["count"] for c in classes]
    if min(counts) and max(counts) / min(counts) >= IMBALANCE_RATIO:
        big = max(classes, key=lambda c: c["count"])
        small = min(classes, key=lambda c: c["count"])
        found.append(
            _warning(
                "imbalance",
                LABEL_COLUMN,
                f"The classes are unbalanced: '{big['name']}' has {big['count']} pictures, '{small['name']}' "
                f"only {small['count']}.",
                "Accuracy can look good while the small class is always missed; watch the F1 score and the "
                "confusion matrix, or add pictures of the small classes.",
            )
        )
    tiny = profile["sizes"]["tiny"]
    if tiny:
        found.append(
            _warning(
                "tiny_images",
                IMAGE_COLUMN,
                f"{tiny} picture(s) are smaller than {TINY_SIDE} pixels on a side.",
                "They are enlarged and look blurry; use the small CNN with a small image size, or bigger pictures.",
            )
        )
    conflicts = profile["label_conflicts"]
    if conflicts:
        example = conflicts[0]
        found.append(
            _warning(
                "label_conflicts",
                LABEL_COLUMN,
                f"{len(conflicts)} picture(s) appear in more than one class, e.g. "
                f"{_listing(example['files'], 3)} (classes {', '.join(example['labels'])}).",
                "They were left out because their class is ambiguous; move each to its right folder and upload "
                "the zip again.",
            )
        )
    duplicates = profile["duplicates"]
    if duplicates:
        copies = sum(len(d["copies"]) for d in duplicates)
        found.append(
            _warning(
                "duplicates",
                IMAGE_COLUMN,
                f"{copies} picture(s) are exact copies of another in the same class, e.g. "
                f"'{duplicates[0]['copies'][0]}' repeats '{duplicates[0]['kept']}'.",
                "Each was kept once, so a copy cannot sit in training and in the test set at the same time.",
            )
        )
    skipped = profile["skipped"]
    if skipped:
        reasons = Counter(s["reason"].split(" (")[0] for s in skipped)
        summary = "; ".join(f"{n} × {reason}" for reason, n in reasons.most_common(3))
        found.append(
            _warning(
                "skipped_files",
                IMAGE_COLUMN,
                f"{len(skipped)} file(s) in the zip were skipped: {summary}.",
                "The list of skipped files and their reasons is shown with the data set; fix or remove them if "
                "they should be pictures.",
            )
        )
    return found
