"""Sending a base-model folder of the studio's machine to the Ray nodes that fine-tune it.

A fine-tuning job on Ray names its base model as the user gave it: a folder of the studio's machine, or a
Hugging Face id. An id is looked up on the node (its cache, or the Hub). A folder is sent the way data sets
are (:mod:`studio.jobs.executors.ray`): before the job is submitted, the folder is uploaded once as the
artifacts of a run in the ``studio-base-models`` experiment (found again by a digest of its files, so
the next job sends nothing), and the node downloads it into ``<node STUDIO_HOME>/base-models/<digest>``
unless the same path holds a model there already (a shared disk, or a node image that has it). The spec
keeps the user's path; the node finds the copy through ``STUDIO_BASE_MODEL_COPIES`` (path → copy) and the
bundle names the studio machine's folder, so Predict and "Make the merged model" find it there.

A folder larger than ``STUDIO_RAY_MAX_MODEL_BYTES`` (default 2 GB) is not sent: the job fails before it is
submitted, with a sentence saying to put the model on the nodes (or raise the limit). MLflow carries the
bytes: about as fast as the network between the studio, the MLflow server and the node (a 1 GB model is
uploaded once, then downloaded once per node).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from studio.core.errors import JobError
from studio.modalities.llm.models import COPIES_ENV  # (the node's copies, by the user's path)

EXPERIMENT = "studio-base-models"
ARTIFACT = "model"
TAG_DIGEST = "studio.base_model_digest"
TAG_FOLDER = "studio.base_model_folder"
SHIPPED_ENV = "STUDIO_BASE_MODEL_SHIPPED"
"""On the node: ``{"ref", "path", "run", "digest"}`` of the job's shipped folder (JSON)."""
MAX_BYTES_ENV = "STUDIO_RAY_MAX_MODEL_BYTES"
MAX_BYTES = 2 * 1024**3
ORIGIN_FILE = ".studio-shipped-from"
"""In a fetched copy: the folder on the studio's machine it was sent from."""

_digests: dict[tuple, str] = {}


def max_bytes() -> int:
    try:
        return int(float(os.environ.get(MAX_BYTES_ENV) or MAX_BYTES))
    except ValueError:
        return MAX_BYTES


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ORIGIN_FILE)


def folder_digest(folder: Path) -> str:
    """A SHA-256 of the folder's files (their names and contents), kept for unchanged files (names, sizes,
    times) so a second job does not read the weights again."""
    files = _files(folder)
    stamp = (str(folder.resolve()), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stamp in _digests:
        return _digests[stamp]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    _digests[stamp] = digest.hexdigest()
    return _digests[stamp]


def local_folder(ref: str) -> Path | None:
    """The base model's folder when ``ref`` names one on this machine (a Hugging Face id: ``None``)."""
    path = Path(str(ref).strip()).expanduser()
    return path.resolve() if path.is_dir() else None


def publish_base_model(ref: str) -> dict[str, Any] | None:
    """Upload the folder ``ref`` names to MLflow for the nodes (once per content); what the node needs to
    fetch it, or ``None`` when ``ref`` is no folder here. A :class:`JobError` in one sentence when it is
    larger than :func:`max_bytes`."""
    from studio import tracking
    from studio.modalities.llm.models import human_bytes

    folder = local_folder(ref)
    if folder is None:
        return None
    size = sum(p.stat().st_size for p in _files(folder))
    if size > max_bytes():
        raise JobError(
            f"The base model folder '{ref}' is {human_bytes(size)}, more than the {human_bytes(max_bytes())} "
            f"the studio sends to Ray nodes: put the model on every node at the same path, or raise "
            f"{MAX_BYTES_ENV}."
        )
    digest = folder_digest(folder)
    client = tracking.client()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        from studio.core import settings

        location = None
        if settings.tracking_uri().startswith("sqlite:"):
            location = (settings.artifact_root() / "_base_models").as_uri()
        try:
            experiment_id = client.create_experiment(EXPERIMENT, artifact_location=location)
        except Exception:  # another process made it meanwhile
            experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    else:
        experiment_id = experiment.experiment_id
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_DIGEST}` = '{digest}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if found:
        run_id = found[0].info.run_id
    else:
        run = client.create_run(
            experiment_id,
            run_name=folder.name,
            tags={TAG_DIGEST: digest, TAG_FOLDER: str(folder), tracking.TAG_KIND: "base_model"},
        )
        run_id = run.info.run_id
        try:
            client.log_artifacts(run_id, str(folder), ARTIFACT)
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
    return {"ref": str(ref), "path": str(folder), "run": run_id, "digest": digest, "bytes": size}


def publish_for(spec: Any) -> dict[str, Any] | None:
    """:func:`publish_base_model` for a fine-tuning spec; ``None`` for the other kinds' specs."""
    base = dict(spec.architecture.params or {}).get("base_model")  # (only a language model's spec has one)
    return publish_base_model(base) if base else None


def fetch_base_model(shipped: dict[str, Any], home: Path) -> tuple[Path, str]:
    """On a node: the folder to train from for a shipped base model, and what happened in words. The
    user's path when it holds a model here; else the copy in ``home/base-models/<digest>``, downloaded
    from MLflow unless an earlier job fetched it. The copy is recorded in ``STUDIO_BASE_MODEL_COPIES``
    for :func:`studio.modalities.llm.models.find_base_model`."""
    from studio import tracking
    from studio.modalities.llm.models import human_bytes, is_model_folder

    here = Path(shipped["ref"]).expanduser()
    if is_model_folder(here):
        return here, f"base model {shipped['ref']}: already on this node"
    root = home / "base-models"
    copy = root / shipped["digest"]
    said = f"base model {shipped['ref']}: already fetched to this node, at {copy}"
    if not is_model_folder(copy):
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".fetch-{shipped['digest'][:12]}-", dir=root))
        try:
            tracking.client().download_artifacts(shipped["run"], ARTIFACT, str(staging))
            (staging / ARTIFACT / ORIGIN_FILE).write_text(shipped["path"], encoding="utf-8")
            with contextlib.suppress(OSError):  # another job on this node fetched it meanwhile
                (staging / ARTIFACT).rename(copy)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        said = f"base model {shipped['ref']}: fetched from MLflow ({human_bytes(shipped.get('bytes', 0))}) into {copy}"
    copies = json.loads(os.environ.get(COPIES_ENV) or "{}")
    copies[str(shipped["ref"])] = str(copy)
    os.environ[COPIES_ENV] = json.dumps(copies)
    return copy, said


def origin_of(folder: Path) -> str | None:
    """The studio machine's folder a fetched copy was sent from (what the bundle names), else ``None``."""
    try:
        return (Path(folder) / ORIGIN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
