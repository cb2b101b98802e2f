"""Reading a bundle: checks the zip (format, version, size when unpacked, and what the bundle's kind checks
of its info), extracts it safely, loads the MLflow model, and predicts for what the kind takes (table
rows by default)."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import weakref
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.errors import BundleError

if TYPE_CHECKING:
    import pandas as pd


from studio.bundle.layout import (
    FORMAT,
    FORMAT_VERSION,
    INFO_FILE,
    INFO_MEMBER,
    MAX_UNPACKED_BYTES,
    _quiet_mlflow,
    flavour,
    flavours,
)

_log = logging.getLogger(__name__)


def _open_zip(path_zip: str | Path) -> tuple[zipfile.ZipFile, str]:
    """The bundle's zip and the folder prefix of its model (``""``, or one folder if it was re-zipped)."""
    path = Path(path_zip).expanduser()
    if not path.is_file():
        raise BundleError(f"There is no model bundle at '{path}' (no such file).")
    if not zipfile.is_zipfile(path):
        raise BundleError(
            f"'{path.name}' is not a zip file; a model bundle is the .zip the studio's Runs page downloads."
        )
    try:
        zf = zipfile.ZipFile(path)
        names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise BundleError(f"'{path.name}' is a damaged zip file ({err}).") from None
    prefixes = [n[: -len(INFO_MEMBER)] for n in names if n.endswith(INFO_MEMBER)]
    prefixes = [p for p in prefixes if p.count("/") <= 1 and f"{p}MLmodel" in names]
    if not prefixes:
        zf.close()
        raise BundleError(
            f"'{path.name}' is a zip file but not a Training Studio model bundle (it has no MLmodel and {INFO_MEMBER})."
        )
    return zf, min(prefixes, key=len)


def _check_info(info: Any, name: str) -> dict[str, Any]:
    if (
        not isinstance(info, dict)
        or info.get("format") != FORMAT
        or not isinstance(info.get("format_version"), int)
    ):
        raise BundleError(
            f"'{name}' is not a Training Studio model bundle (its {INFO_FILE} is not one of ours)."
        )
    if info["format_version"] > FORMAT_VERSION:
        raise BundleError(
            f"'{name}' was written by a newer Training Studio (bundle format {info['format_version']}; this version "
            f"reads format {FORMAT_VERSION} and older): update the studio to use it."
        )
    if not isinstance(info.get("predictor"), dict):  # written before bundles named their predictor
        known = [kind for kind, how in flavours().items() if how.loads_without_predictor]
        if info.get("kind") not in known:
            raise BundleError(
                f"'{name}' holds a '{info.get('kind')}' model, which this version of the studio cannot load "
                f"(it loads: {', '.join(known)})."
            )
    check = flavour(str(info.get("kind"))).check_info
    if check is not None:
        check(info, name)
    return info


def _read_info(zf: zipfile.ZipFile, prefix: str, name: str) -> dict[str, Any]:
    try:
        info = json.loads(zf.read(prefix + INFO_MEMBER).decode("utf-8"))
    except (ValueError, zipfile.BadZipFile, OSError) as err:
        raise BundleError(f"'{name}' is damaged: its {INFO_FILE} cannot be read ({err}).") from None
    return _check_info(info, name)


def read_bundle_info(path_zip: str | Path) -> dict[str, Any]:
    """The bundle's ``studio_model.json`` read straight from the zip (no mlflow, no torch)."""
    zf, prefix = _open_zip(path_zip)
    with zf:
        return _read_info(zf, prefix, Path(path_zip).name)


def require_shared_column(expected: list[str], columns: Any) -> None:
    if expected and not set(map(str, columns)) & set(expected):
        raise BundleError(
            "None of the data's columns is an input of this model (names must match exactly); "
            f"it expects: {', '.join(expected)}."
        )


class LoadedBundle:
    """A bundle unpacked into a temporary folder and opened with ``mlflow.pyfunc.load_model``.

    The folder is removed by :meth:`close` (or when the object is garbage collected).
    """

    def __init__(self, source: Path, folder: Path, info: dict[str, Any], model: Any):
        self.source = source
        self.folder = folder
        self.info = info
        self.model = model
        self._cleanup = weakref.finalize(self, shutil.rmtree, folder.parent, True)

    @property
    def kind(self) -> str:
        return self.info["kind"]

    @property
    def task(self) -> str:
        return self.info["task"]

    @property
    def target_name(self) -> str:
        return self.info["target"]["name"]

    @property
    def classes(self) -> list[str] | None:
        return self.info["target"].get("classes")

    @property
    def input_columns(self) -> list[str]:
        return [column["name"] for column in self.info["input_columns"]]

    @property
    def prediction_columns(self) -> list[str]:
        return [f"predicted_{self.target_name}"] + [f"probability_{c}" for c in self.classes or []]

    @property
    def onnx_path(self) -> Path | None:
        file = self.info["onnx"].get("file")
        return self.folder / file if file else None

    def predict(self, rows: pd.DataFrame | list[dict[str, Any]] | dict[str, Any] | Any) -> pd.DataFrame:
        """Predictions for raw rows: a DataFrame (index kept), records, or one row as a dict; rows sharing
        no column with the model are refused. A kind that takes other inputs (pictures: paths or bytes)
        turns what it is given into the model's DataFrame (its flavour's ``as_input``); what it cannot
        read is a :class:`BundleError` in its words."""
        import pandas as pd

        as_input = flavour(self.kind).as_input
        if as_input is not None:
            try:
                return self.model.predict(as_input(rows))
            except (ValueError, TypeError) as err:
                raise BundleError(str(err).strip().splitlines()[0]) from None
        if isinstance(rows, dict):
            rows = [rows]
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        require_shared_column(self.input_columns, frame.columns)
        return self.model.predict(frame)

    def close(self) -> None:
        self._cleanup()

    def __enter__(self) -> LoadedBundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_bundle(path_zip: str | Path) -> LoadedBundle:
    """Unpack a bundle into a temporary folder and open it with ``mlflow.pyfunc.load_model``."""
    source = Path(path_zip).expanduser().resolve()
    zf, prefix = _open_zip(source)
    root = Path(tempfile.mkdtemp(prefix="studio-bundle-"))
    folder = root / "model"
    try:
        with zf:
            info = _read_info(zf, prefix, source.name)
            _safe_extract(zf, prefix, folder, source.name)
        import mlflow

        with _quiet_mlflow():
            model = mlflow.pyfunc.load_model(str(folder))
    except BundleError:
        shutil.rmtree(root, ignore_errors=True)
        raise
    except Exception as err:
        shutil.rmtree(root, ignore_errors=True)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BundleError(f"The model bundle '{source.name}' could not be loaded: {first}") from err
    return LoadedBundle(source, folder, info, model)


def _safe_extract(zf: zipfile.ZipFile, prefix: str, folder: Path, name: str) -> None:
    members = [m for m in zf.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
    if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
        raise BundleError(
            f"'{name}' unpacks to more than {MAX_UNPACKED_BYTES // 2**30} GiB; it is not a studio bundle."
        )
    base = folder.resolve()
    for member in members:
        relative = member.filename[len(prefix) :]
        target = (base / relative).resolve()
        if relative.startswith("/") or ".." in Path(relative).parts or not target.is_relative_to(base):
            raise BundleError(f"'{name}' contains an unsafe path ({member.filename}); it was not unpacked.")
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
