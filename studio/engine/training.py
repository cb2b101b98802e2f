"""Training as one plain function: ``train(spec) -> TrainResult``.

The CLI, the job worker and the tests all call :func:`train`. It owns one MLflow run: params, tags,
curves, test metrics, the spec, the data profile and the model bundle. A failure ends the run as
FAILED with the reason as a tag; a cancellation ends it as KILLED.

A run whose loss becomes NaN or infinite stops at once (see :func:`divergence_outcome`): it fails with
a plain reason and no bundle, unless the best epoch before that is still a usable model, which is then
tested and bundled as usual and the run carries a note saying so (``TrainResult.note``, the MLflow tag
``studio.note``).

The run saves its whole training state at the end of an epoch (``lightning_modules.callbacks.
EpochCheckpoint``); a run that stopped (worker killed, machine restarted, cancelled) continues from it
in the same MLflow run (``resume_run_id``) and ends exactly as a straight run. Running out of memory is
retried once from there with half the batch and two accumulated mini-batches per step.

Every kind of data shares this loop: the task's data kind (``studio.modalities``, looked up once in
:func:`_prepare`) checks the data and builds the DataModule, the LightningModule, the tags it adds,
what it logs after testing (pictures: the confusion matrix) and its bundle; the Lightning loop, the
callbacks, MLflow logging, checkpoints, retries and the cancel/fail handling are the same code.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio import tracking
from studio.core import ensembles
from studio.core.errors import StudioError, TrainingError
from studio.core.settings import studio_home
from studio.core.spec import OptimizerSpec, RunSpec, metric_mode
from studio.core.tasks import DATA_KINDS, task_info, tasks_for
from studio.engine.checkpoints import checkpoint_file, latest_checkpoint


class TrainingCancelled(StudioError):
    """The user stopped the run; its MLflow run is already marked KILLED."""


@dataclass
class Progress:
    epoch: int
    max_epochs: int
    step: int
    total_steps: int
    fraction: float
    eta_seconds: float | None
    metrics: dict[str, float] = field(default_factory=dict)


class TrainHooks:
    """Override to follow a run: the worker keeps its job current through these."""

    runs_test: bool = True
    """False for a search's trial: it is judged on its validation rows only, and the test rows are
    used once, by :func:`evaluate_chosen_model`, for the trial the search chooses."""

    def on_run_started(self, run_id: str, experiment_id: str) -> None:
        """The MLflow run exists (called before the first epoch)."""

    def on_progress(self, progress: Progress) -> None:
        """Called at most every ~0.5 s and at each epoch end."""

    def should_stop(self) -> bool:
        """Polled before every training step; True stops the run as cancelled."""
        return False

    def on_note(self, sentence: str) -> None:
        """Something the user should know happened (resumed; retried with a smaller batch)."""

    def on_folds_kept(self, kept: list[dict[str, float]]) -> None:
        """A fold ensemble's other fold models are trained: the validation scores (``val/*``) of the
        epoch each one kept, folds 1, 2 … (fold 0 is the run itself)."""


@dataclass
class TrainResult:
    run_id: str
    experiment_id: str
    test_metrics: dict[str, float]
    bundle_path: Path | None
    status: str
    best_epoch: int | None = None
    epochs_run: int = 0
    seconds: float = 0.0
    first_point_seconds: float | None = None
    fit_seconds: float = 0.0
    train_rows: int = 0
    ignored_columns: dict[str, str] = field(default_factory=dict)
    dropped_rows: int = 0
    note: str | None = None  # how the run ended when it was not plainly: e.g. an earlier epoch kept
    retry_note: str | None = None  # it ran out of memory and went on with a smaller batch
    checkpoint_seconds: float = 0.0  # spent writing checkpoints
    checkpoint_bytes: int = 0  # size of the last checkpoint
    quality: dict[str, float] = field(default_factory=dict)
    """What the scores mean (:mod:`studio.core.quality`): the kept epoch and its validation scores
    (``kept/*``) and the trivial guess's scores on the same test rows (``baseline/*``)."""


@dataclass(frozen=True)
class DevicePlan:
    accelerator: str
    devices: Any
    precision: str
    description: str
    world_size: int = 1  # processes training together (DDP, see studio.engine.ddp)


def resolve_device(requested: str, precision: str, devices: str = "1") -> DevicePlan:
    """Map the spec's device, devices and precision to Lightning's arguments (GPU when there is one).
    More than one device trains in that many processes (:mod:`studio.engine.ddp`)."""
    import torch

    from studio.engine.ddp import world_size

    has_cuda = torch.cuda.is_available()
    if requested.startswith("cuda") and not has_cuda:
        raise TrainingError(
            f"The spec asks for device '{requested}', but no GPU is available here; choose 'auto' or 'cpu'."
        )
    if requested == "cpu" or (requested == "auto" and not has_cuda):
        # Mixed precision gains nothing on CPU for these models and 16-bit is unsupported there.
        cpu_precision = "32-true" if precision != "bf16-mixed" else "bf16-mixed"
        world = world_size(devices, gpus=None)
        if world > 1:
            return DevicePlan("cpu", world, cpu_precision, f"CPU, {world} processes", world)
        return DevicePlan("cpu", 1, cpu_precision, "CPU")
    world = world_size(devices, gpus=torch.cuda.device_count()) if not requested.startswith("cuda:") else 1
    if world > 1:
        names = sorted({torch.cuda.get_device_name(i) for i in range(world)})
        lightning_precision = {"32": "32-true"}.get(precision, precision)
        return DevicePlan(
            "gpu", list(range(world)), lightning_precision, f"{world} GPUs: {', '.join(names)}", world
        )
    index = int(requested.split(":", 1)[1]) if ":" in requested else 0
    if index >= torch.cuda.device_count():
        raise TrainingError(
            f"GPU {index} does not exist: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0."
        )
    lightning_precision = {"32": "32-true"}.get(precision, precision)
    return DevicePlan(
        "gpu", [index], lightning_precision, f"GPU {index}: {torch.cuda.get_device_name(index)}"
    )


def _quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric", "mlflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*_pytree.*")


def _cheap_cuda_checks() -> None:
    """Undo Lightning's ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (set when it is imported). With it, every
    optimiser step asks ``torch.cuda.is_available()`` through NVML, loading the NVML library each time
    (measured here: 43 µs per call against 2 µs without). The studio forks no
    DataLoader workers after CUDA starts, which is what that setting protects against."""
    os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)


def train(
    spec: RunSpec,
    *,
    job_id: str | None = None,
    hooks: TrainHooks | None = None,
    bundle_out: str | Path | None = None,
    progress_bar: bool = False,
    checkpoint_dir: str | Path | None = None,
    resume_run_id: str | None = None,
    run_tags: dict[str, str] | None = None,
) -> TrainResult:
    """Train the model a spec describes, track it in MLflow and write its bundle.

    ``run_tags`` are added to a new MLflow run's tags when it starts (e.g. ``mlflow.parentRunId`` for a
    search's trial).

    The whole training state is saved at the end of an epoch (at most every ``STUDIO_CHECKPOINT_SECONDS``)
    in ``checkpoint_dir``: a job passes its own and removes it when the job has ended for good; without
    one, a temporary folder under ``STUDIO_HOME/tmp`` serves the out-of-memory retry only. With
    ``resume_run_id`` the run continues that MLflow run from the latest checkpoint there, and ends as
    the straight run would have. Running out of memory is retried once, from the latest checkpoint,
    with half the batch size and two accumulated mini-batches per step (see :func:`_fit_with_retry`).

    Raises :class:`~studio.core.errors.StudioError` subclasses (one plain sentence) for problems the user can
    fix, :class:`TrainingCancelled` when ``hooks.should_stop()`` asked to stop. Anything else is a crash;
    the MLflow run is then ended FAILED with the exception as the reason before it propagates.
    """
    from studio.data import get_dataset, load_profile, readable_run_name

    hooks = hooks or TrainHooks()
    started = time.monotonic()
    dataset = get_dataset(spec.data.dataset_id)
    _check_data_kind(spec, dataset)
    profile = load_profile(dataset.id)
    plan = resolve_device(spec.training.device, spec.training.precision, spec.training.devices)

    import pytorch_lightning  # noqa: F401  (configures its loggers on import; quieten them after)

    _quiet_lightning()
    _cheap_cuda_checks()
    with contextlib.ExitStack() as stack:
        if checkpoint_dir is None:  # beside the studio's data, not in a temp folder that may be in memory
            scratch = studio_home() / "tmp"
            scratch.mkdir(exist_ok=True)
            folder = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="checkpoints-", dir=scratch))
            )
        else:
            folder = Path(checkpoint_dir)
        session = _Session(folder=folder, resumable=checkpoint_dir is not None, asked=spec)
        if resume_run_id:
            session.resume(latest_checkpoint(folder))
        else:
            remove_checkpoint_files(folder)  # a new run never continues from files left by another
        effective = session.effective_spec(spec)
        # Validates the data (and a picture network's weights) before a run exists.
        prepared: _Prepared | None = _prepare(effective, dataset, profile, plan)
        assert prepared is not None

        if resume_run_id:
            run_id, experiment_id = resume_run_id, tracking.reopen_run(resume_run_id)
            session.logged = tracking.logged_steps(run_id)
            session.new_run = False
        else:
            run_id, experiment_id = tracking.start_run(
                spec,
                job_id=job_id,
                extra_tags={
                    "mlflow.runName": readable_run_name(spec),
                    **(run_tags or {}),
                    tracking.TAG_STEPS_PER_EPOCH: str(prepared.data.steps_per_epoch),
                    tracking.TAG_KIND: prepared.kind,
                },
            )
        try:
            hooks.on_run_started(run_id, experiment_id)
            if session.resume_from is not None:
                hooks.on_note(f"Resumed at epoch {session.resume_epoch + 1} from its saved progress.")
            attempt, prepared = [prepared], None  # held by the retry loop only: it frees them on a retry
            result = _fit_with_retry(
                effective,
                attempt,
                session,
                dataset,
                profile,
                run_id,
                experiment_id,
                hooks,
                bundle_out,
                progress_bar,
            )
        except TrainingCancelled:
            tracking.end_run(run_id, "KILLED")
            raise
        except StudioError as err:
            tracking.end_run(run_id, "FAILED", str(err))
            raise
        except BaseException as err:
            status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
            tracking.end_run(
                run_id, status, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            )
            raise
    result.seconds = time.monotonic() - started
    return result


# --------------------------------------------------------------------------- checkpoints and retries
log = logging.getLogger("studio.engine.training")

CHECKPOINT_SECONDS_ENV = "STUDIO_CHECKPOINT_SECONDS"
DEFAULT_CHECKPOINT_SECONDS = 2.0
"""The least time between two checkpoints: an epoch that ends sooner after the previous one saves none
(``STUDIO_CHECKPOINT_SECONDS``; 0 saves at the end of every epoch)."""

TEST_OOM_AT_STEP = "STUDIO_TEST_OOM_AT_STEP"
"""Test-only: raise an out-of-memory error at the first training batch at or after this optimiser step."""
TEST_OOM_REPEAT = "STUDIO_TEST_OOM_REPEAT"
"""Test-only, with ``STUDIO_TEST_OOM_AT_STEP``: ``1`` raises it in the retry too (so the run fails)."""
TEST_SLOW_EPOCHS = "STUDIO_TEST_SLOW_EPOCHS"
"""Test-only: seconds each epoch waits at its end, before its checkpoint (to stop a worker mid-run)."""


class CheckpointSpaceError(TrainingError):
    """The disk is too full to save the run's progress; nothing was half-written."""


@dataclass
class _Prepared:
    """One attempt's data and model recipe from the task's data kind (a retry prepares them again)."""

    trainee: Any
    """What the data kind prepared: a :class:`studio.modalities.base.Prepared`."""
    kind: str
    plan: DevicePlan

    @property
    def data(self) -> Any:
        return self.trainee.data


@dataclass
class _Session:
    """How a run is fitted: where its checkpoints go, what it continues from, its batch settings."""

    folder: Path
    resumable: bool  # the folder outlives this call (a job's): a stopped run can resume from it
    asked: RunSpec | None = None  # the spec as given (what the bundle records)
    resume_from: Path | None = None
    resume_epoch: int = 0
    batch_size: int | None = None  # set after running out of memory (or by the checkpoint resumed)
    accumulate: int = 1
    retried: bool = False  # ran out of memory once already
    notes: list[str] = field(default_factory=list)  # what happened on the way (the retry)
    logged: dict[str, int] = field(default_factory=dict)  # metric -> last step MLflow already holds
    new_run: bool = True
    checkpoint_seconds: float = 0.0
    checkpoint_bytes: int = 0

    def resume(self, checkpoint: Any) -> None:
        if checkpoint is None:
            raise TrainingError(
                "There is no saved progress to resume this run from (it stopped before its first epoch "
                "ended); start it again."
            )
        self.resume_from, self.resume_epoch = checkpoint.path, checkpoint.epoch
        saved = read_checkpoint_settings(checkpoint.path)
        self.batch_size = saved.get("batch_size")
        self.accumulate = int(saved.get("accumulate", 1))
        self.retried = bool(saved.get("retried", False))
        self.notes = list(saved.get("notes", []))

    def effective_spec(self, spec: RunSpec) -> RunSpec:
        """The spec this attempt trains with: the asked one, with the halved batch size after running
        out of memory. (The bundle and MLflow keep the asked one; the run's note says what changed.)"""
        if self.accumulate == 1 or self.batch_size is None:
            return spec
        return spec.with_changes(**{"training.batch_size": int(self.batch_size)})

    def settings(self, batch_size: int) -> dict[str, Any]:
        """What a checkpoint records beside Lightning's state, for a run resumed from it."""
        return {
            "batch_size": int(batch_size),
            "accumulate": self.accumulate,
            "retried": self.retried,
            "notes": list(self.notes),
        }

    def optimizer_steps_per_epoch(self, batches: int) -> int:
        return max(1, math.ceil(batches / self.accumulate))


def checkpoint_seconds() -> float:
    """``STUDIO_CHECKPOINT_SECONDS`` (default 2): the least time between two checkpoints."""
    raw = os.environ.get(CHECKPOINT_SECONDS_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_CHECKPOINT_SECONDS
    except ValueError:
        log.warning(
            "%s=%r is not a number of seconds; using %s",
            CHECKPOINT_SECONDS_ENV,
            raw,
            DEFAULT_CHECKPOINT_SECONDS,
        )
        return DEFAULT_CHECKPOINT_SECONDS


def remove_checkpoint_files(folder: Path) -> None:
    for old in Path(folder).glob("epoch-*.ckpt"):
        with contextlib.suppress(FileNotFoundError):
            old.unlink()


def read_checkpoint_settings(path: Path) -> dict[str, Any]:
    """The studio's settings saved in a checkpoint (batch size, accumulation, retry, notes)."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return dict(checkpoint.get("callbacks", {}).get("EpochCheckpoint", {}).get("settings", {}))


def check_checkpoint_space(needed: int, folder: Path, *, resumable: bool) -> None:
    """:class:`CheckpointSpaceError` when the disk holding ``folder`` has less than ``needed`` bytes
    (plus the data sets' margin) free: checked before each checkpoint, so a full disk stops the run
    with a plain message instead of a half-written file. The margin and size words are the data-set
    store's (:func:`studio.data.store.check_free_space`)."""
    from studio.data import store as datasets_store

    free = shutil.disk_usage(folder).free
    margin = datasets_store.DISK_MARGIN_BYTES
    if free >= needed + margin:
        return
    words = datasets_store.human_size
    saved = latest_checkpoint(folder)
    if resumable and saved is not None:
        then = f"Its progress up to epoch {saved.epoch} is saved: free some space, then resume the run."
    else:
        then = "Free some space and start the run again."
    raise CheckpointSpaceError(
        f"There is not enough free disk space to save this run's progress: a checkpoint needs about "
        f"{words(needed)} (plus {words(margin)} to spare) and only {words(free)} is free in {folder}. "
        f"{then} Nothing was half-written."
    )


def out_of_memory_kind(err: BaseException) -> str | None:
    """``"GPU"`` or ``"CPU"`` when ``err`` says that device ran out of memory, else None."""
    if isinstance(err, MemoryError):
        return "CPU"
    text = str(err)
    if type(err).__name__ == "OutOfMemoryError" or ("out of memory" in text.lower() and "CUDA" in text):
        return "GPU"
    if isinstance(err, RuntimeError) and ("DefaultCPUAllocator" in text or "can't allocate memory" in text):
        return "CPU"
    return None


def out_of_memory_failure(kind: str, batch_size: int, accumulate: int) -> TrainingError:
    """The plain failure when memory ran out and no retry is left."""
    device = "The GPU" if kind == "GPU" else "The machine"
    again = (
        f" again after retrying with half the batch size ({batch_size} × {accumulate} accumulated steps)"
        if accumulate > 1
        else ""
    )
    advice = (
        "lower the batch size (or use a smaller network)"
        if kind == "GPU"
        else "lower the batch size, use fewer columns or close other programs"
    )
    return TrainingError(f"{device} ran out of memory{again}: {advice}.")


def retry_note(kind: str, batch_size: int, half: int, continued_epoch: int | None) -> str:
    """``Ran out of GPU memory at batch size 64; continued from epoch 3 with batch size 32 × 2
    accumulated steps.``"""
    memory = "GPU memory" if kind == "GPU" else "memory"
    where = (
        f"continued from epoch {continued_epoch}" if continued_epoch else "started again from the beginning"
    )
    return f"Ran out of {memory} at batch size {batch_size}; {where} with batch size {half} × 2 accumulated steps."


def _release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _fit_with_retry(
    spec: RunSpec,
    attempt: list[_Prepared],
    session: _Session,
    dataset: Any,
    profile: dict[str, Any],
    run_id: str,
    experiment_id: str,
    hooks: TrainHooks,
    bundle_out: str | Path | None,
    progress_bar: bool,
) -> TrainResult:
    """Fit; when the device runs out of memory (CUDA's ``OutOfMemoryError``, the CPU allocator's error,
    ``MemoryError``) the first time, fit again from the latest checkpoint (from the start when there is
    none) with half the batch size and two accumulated mini-batches per optimiser step, so that each
    step still learns from as many rows. The run keeps its MLflow run and says so in ``studio.note``,
    the job's note and the log. Running out again fails with the plain message.

    ``attempt`` holds the prepared data and fit function; it is emptied so that nothing keeps the
    failed attempt's tensors alive."""
    prepared = attempt.pop()
    while True:
        batch_size = int(prepared.data.batch_size)
        try:
            return _fit_and_log(
                spec,
                prepared,
                run_id,
                experiment_id,
                hooks,
                bundle_out,
                progress_bar,
                profile,
                session=session,
            )
        except BaseException as err:
            kind = out_of_memory_kind(err)
            if kind is None:
                raise
        # Out of the except block: the error and its frames (holding the batch's tensors) are gone.
        base_plan = resolve_device(spec.training.device, spec.training.precision, spec.training.devices)
        prepared = None  # type: ignore[assignment]
        _release_memory()
        if session.retried or batch_size < 2:
            raise out_of_memory_failure(kind, batch_size, session.accumulate)
        half = batch_size // 2
        saved = latest_checkpoint(session.folder)
        note = retry_note(kind, batch_size, half, saved.epoch + 1 if saved else None)
        log.warning("%s", note)
        session.retried, session.accumulate, session.batch_size = True, 2, half
        session.notes.append(note)
        session.resume_from = saved.path if saved else None
        session.resume_epoch = saved.epoch if saved else 0
        session.logged = tracking.logged_steps(run_id)  # the points before the error are kept
        hooks.on_note(note)
        tracking.set_tags(
            run_id,
            {
                tracking.TAG_NOTE: " ".join(session.notes),
                tracking.TAG_BATCH_SIZE: f"{half} × 2 accumulated steps",
                tracking.TAG_ACCUMULATE: "2",
            },
        )
        spec = session.effective_spec(spec)
        prepared = _prepare(spec, dataset, profile, base_plan)


def _prepare(spec: RunSpec, dataset: Any, profile: dict[str, Any], plan: DevicePlan) -> _Prepared:
    """Seed, then let the task's data kind check the data and build the DataModule (and for pictures
    the network): the same start every attempt."""
    import torch

    from studio.data import load_table
    from studio.engine.ddp import share_data
    from studio.modalities import modality_for

    torch.manual_seed(spec.data.seed)
    kind = modality_for(spec.task)
    if spec.data.use_all_data and not getattr(kind, "ensembles", False):
        raise TrainingError(
            f"'Use all my data' (fold models averaged into one) works for tables and texts only; "
            f"{task_info(spec.task).title.lower()} trains one model: turn the switch off."
        )
    table = load_table(dataset.id)
    prepared = _Prepared(kind.prepare(spec, dataset, table, profile), kind.name, kind.device_plan(plan))
    share_data(prepared.data, prepared.plan.world_size)  # several devices: each takes a share of it
    return prepared


def _check_data_kind(spec: RunSpec, dataset: Any) -> None:
    """The data set is of the kind the task trains on (a table for classification, pictures for image
    classification), else a sentence saying which tasks fit it."""
    info = task_info(spec.task)
    if dataset.kind == info.data_kind:
        return
    fitting = tasks_for(dataset.kind)
    what = DATA_KINDS.get(dataset.kind, (f"holds {dataset.kind} data", ""))[0]
    if len(fitting) == 1:
        raise TrainingError(f"Data set '{dataset.id}' {what}; choose the task '{fitting[0]}' to train on it.")
    choices = " or ".join(f"'{t}'" for t in fitting) or "another task"
    raise TrainingError(
        f"Data set '{dataset.id}' {what}; {info.title.lower()} needs "
        f"{DATA_KINDS.get(info.data_kind, ('', info.data_kind))[1]}. Choose {choices} for it."
    )


def _log_run_inputs(
    session: _Session,
    run_id: str,
    spec: RunSpec,
    profile: dict[str, Any],
    plan: DevicePlan,
    data: Any,
    extra_tags: dict[str, str],
) -> None:
    """The spec and data profile as artifacts, and what the run was given as tags: once per run (a
    resumed or retried run has them already)."""
    if not session.new_run:
        return
    session.new_run = False
    mlflow_client = tracking.client()
    mlflow_client.log_text(run_id, spec.to_json(), tracking.SPEC_ARTIFACT)
    mlflow_client.log_dict(run_id, tracking.json_safe(profile), tracking.PROFILE_ARTIFACT)
    tags = {
        tracking.TAG_DEVICE: plan.description,
        tracking.TAG_ROWS: str(data.sizes),
        tracking.TAG_BATCH_SIZE: str(data.batch_size),
    }
    tracking.set_tags(run_id, {**tags, **extra_tags})


def _fit_and_log(
    spec: RunSpec,
    prepared: _Prepared,
    run_id: str,
    experiment_id: str,
    hooks: TrainHooks,
    bundle_out: str | Path | None,
    progress_bar: bool,
    profile: dict[str, Any],
    *,
    session: _Session,
) -> TrainResult:
    """One attempt: log what the run was given, fit and test, let the data kind log what it adds and
    write its bundle, end the run FINISHED."""
    trainee, data, plan = prepared.trainee, prepared.data, prepared.plan
    _log_run_inputs(session, run_id, spec, profile, plan, data, trainee.run_tags(plan.precision))
    module = trainee.lightning_module(
        spec, session.optimizer_steps_per_epoch(data.steps_per_epoch), session.accumulate
    )
    ensemble = spec.data.use_all_data
    tested = hooks.runs_test and not ensemble  # an ensemble is tested once all its models are trained
    run = _run_lightning(spec, data, module, plan, run_id, hooks, progress_bar, session, runs_test=tested)
    if ensemble:  # fold 0 is trained; the other folds, then the averaged model is tested and bundled
        module = _complete_ensemble(spec, trainee, module, run, run_id, hooks, plan)
    trainee.after_test(run_id, spec, module)
    with tempfile.TemporaryDirectory(prefix="studio-bundle-") as tmp:
        path = trainee.write_bundle(Path(tmp), session.asked or spec, module, run.test_metrics)
        bundle_path = _publish_bundle(path, run_id, bundle_out)
    _tag_verdict(run_id, {**run.test_metrics, **run.quality})
    kind_notes = trainee.notes() if hasattr(trainee, "notes") else []  # e.g. how many texts were cut
    _end_finished(run_id, " ".join(filter(None, [run.note, *kind_notes])) or None, session)
    result = run.result(run_id, experiment_id, bundle_path, data.sizes["train"], session)
    result.note = " ".join(filter(None, [result.note, *kind_notes])) or None
    trainee.add_to_result(result)
    return result


def _tag_verdict(run_id: str, metrics: dict[str, float]) -> None:
    """The verdict on the test scores against the guess's as MLflow tags (``studio.verdict``: the level
    in words, ``studio.verdict_reason``: the sentence), for whoever reads the run in MLflow."""
    from studio.core.quality import verdict

    found = verdict(metrics)
    if found is not None:
        tracking.set_tags(
            run_id, {tracking.TAG_VERDICT: found.title, tracking.TAG_VERDICT_REASON: found.sentence}
        )


def _quality(spec: RunSpec, data: Any, best: Any, epochs_run: int, tested: bool) -> dict[str, float]:
    """The kept epoch (1-based), the epochs run, the kept epoch's validation scores and rows, and, when
    the run was tested, the trivial guess's scores on the same test rows (:mod:`studio.core.quality`)."""
    from studio.core import quality

    out: dict[str, float] = {}
    if best.best_epoch is not None:
        out[quality.KEPT_EPOCH] = float(best.best_epoch + 1)
        out[quality.EPOCHS_RUN] = float(epochs_run)
        out[quality.VAL_ROWS] = float(data.sizes["val"])
        for key, value in best.best_metrics.items():
            if key.startswith("val/"):
                out[quality.KEPT + key.replace("/", "_", 1)] = float(value)
    if tested:
        out.update(_baseline(spec, data))
    return out


def _baseline(spec: RunSpec, data: Any) -> dict[str, float]:
    """The trivial guess's scores on the test rows, from the DataModule's ``targets`` (empty for a data
    kind whose DataModule has none)."""
    from studio.core.quality import baseline_scores

    targets = getattr(data, "targets", None)
    if targets is None:
        return {}
    return baseline_scores(task_info(spec.task).classes, targets("train"), targets("test"))


def _end_finished(run_id: str, note: str | None, session: _Session) -> None:
    notes = " ".join([*session.notes, *([note] if note else [])])
    if notes:
        tracking.set_tags(run_id, {tracking.TAG_NOTE: notes})
    tracking.end_run(run_id, "FINISHED")


@dataclass
class _LightningRun:
    """What one Lightning fit + test left behind."""

    test_metrics: dict[str, float]
    best_epoch: int | None
    epochs_run: int
    first_point_seconds: float | None
    fit_seconds: float
    note: str | None = None
    quality: dict[str, float] = field(default_factory=dict)

    def result(
        self, run_id: str, experiment_id: str, bundle_path: Path | None, train_rows: int, session: _Session
    ) -> TrainResult:
        return TrainResult(
            run_id=run_id,
            experiment_id=experiment_id,
            test_metrics=self.test_metrics,
            bundle_path=bundle_path,
            status="FINISHED",
            best_epoch=self.best_epoch,
            epochs_run=self.epochs_run,
            first_point_seconds=self.first_point_seconds,
            fit_seconds=self.fit_seconds,
            train_rows=train_rows,
            note=self.note,
            retry_note=" ".join(session.notes) or None,
            checkpoint_seconds=session.checkpoint_seconds,
            checkpoint_bytes=session.checkpoint_bytes,
            quality=self.quality,
        )


def _run_lightning(
    spec: RunSpec,
    data: Any,
    module: Any,
    plan: DevicePlan,
    run_id: str,
    hooks: TrainHooks,
    progress_bar: bool,
    session: _Session,
    *,
    rank: int = 0,
    port: int | None = None,
    runs_test: bool | None = None,
) -> _LightningRun:
    """Fit with the studio's callbacks (MLflow curves, progress, cancel, best weights, early stopping,
    a checkpoint at the end of every epoch), restore the best weights and test them; the test metrics
    (and ``best_epoch``) are logged. With ``session.resume_from`` Lightning restores the whole training
    state from that checkpoint first and goes on with the next epoch.

    Both LightningModules optimise manually (gradient clipping, accumulation and one-cycle steps happen
    inside ``training_step``), so the Trainer gets no clipping or accumulation setting.

    With several devices (``plan.world_size`` > 1) this process is rank 0 and starts the other ranks,
    which run this same function with their ``rank`` and rank 0's ``port``, no ``run_id`` and default
    hooks: they log, report and write nothing (:mod:`studio.engine.ddp`).

    ``runs_test`` (default: ``hooks.runs_test``) False fits without testing (a fold ensemble's first
    model: the ensemble is tested once all its models are trained)."""
    import pytorch_lightning as pl

    from lightning_modules.callbacks import (
        BestWeights,
        EpochCheckpoint,
        TrainingCancelledSignal,
        TrainingDivergedSignal,
        TrainingReporter,
        optimizer_steps,
    )
    from studio.engine import ddp

    runs_test = hooks.runs_test if runs_test is None else runs_test
    monitor = spec.early_stopping.metric
    mode = metric_mode(monitor)
    buffer = tracking.MetricBuffer(run_id, session.logged) if rank == 0 else ddp.NoMetrics()

    def report(raw: dict[str, Any]) -> None:
        hooks.on_progress(Progress(**raw))

    steps_per_epoch = session.optimizer_steps_per_epoch(data.steps_per_epoch)
    reporter = TrainingReporter(buffer.add, buffer.flush, report, hooks.should_stop, steps_per_epoch)
    patience = spec.early_stopping.patience if spec.early_stopping.enabled else None
    best = BestWeights(monitor, mode, patience)
    checkpoints = EpochCheckpoint(
        functools.partial(checkpoint_file, session.folder),
        functools.partial(check_checkpoint_space, resumable=session.resumable),
        session.settings(data.batch_size),
        on_written=reporter.checkpoint_written,
        min_seconds=checkpoint_seconds(),
    )
    callbacks: list[pl.Callback] = [reporter, best, checkpoints, *_test_switches(session)]
    followers = {  # what the other ranks need to build this same attempt
        "spec": spec.to_json(),
        "accumulate": session.accumulate,
        "resume_from": str(session.resume_from) if session.resume_from else None,
        "runs_test": runs_test,
    }
    with (
        tempfile.TemporaryDirectory(prefix="studio-trainer-") as root,
        ddp.ranks(plan, followers, rank=rank, port=port) as strategy,
    ):
        trainer = pl.Trainer(
            accelerator=plan.accelerator,
            devices=plan.devices,
            strategy=strategy,
            precision=plan.precision,
            max_epochs=spec.training.epochs,
            callbacks=callbacks,
            logger=False,
            enable_checkpointing=True,  # by the EpochCheckpoint above (Lightning adds none of its own)
            enable_model_summary=False,
            enable_progress_bar=progress_bar,
            num_sanity_val_steps=0,
            default_root_dir=root,
            deterministic=False,
        )
        fit_started = time.perf_counter()
        diverged: TrainingDivergedSignal | None = None
        try:
            trainer.fit(module, datamodule=data, ckpt_path=session.resume_from, weights_only=True)
        except BaseException as err:
            if isinstance(err, TrainingDivergedSignal):
                diverged = err
            else:
                with contextlib.suppress(Exception):
                    buffer.close()  # keep the curves written so far
                if isinstance(err, TrainingCancelledSignal):
                    raise TrainingCancelled("The run was cancelled.") from None
                if isinstance(err, RuntimeError) and out_of_memory_kind(err) is None:
                    raise _plain_runtime_error(err) from err
                raise
        finally:
            session.checkpoint_seconds += checkpoints.seconds
            session.checkpoint_bytes = checkpoints.bytes or session.checkpoint_bytes
        note = None
        if diverged is not None:
            note = _kept_after_divergence(diverged, spec, best, module, buffer)
        buffer.flush()
        fit_seconds = time.perf_counter() - fit_started
        if trainer.interrupted and diverged is None:
            raise KeyboardInterrupt
        best.restore(module)
        smeared = _smear(module, [(module, data)])  # before the test: it scores smeared predictions
        try:
            if runs_test:
                trainer.test(module, datamodule=data, verbose=False)
        except BaseException:
            with contextlib.suppress(Exception):
                buffer.close()
            raise
    test_metrics = dict(module.test_results) if runs_test else {}
    if diverged is not None and not all(math.isfinite(v) for v in test_metrics.values()):
        buffer.close()  # the kept epoch does not hold up on the test rows either: fail as if none was kept
        raise TrainingError(divergence_reason(diverged, spec.optimizer))
    last_step = optimizer_steps(trainer, module)
    buffer.add(test_metrics, last_step)
    if best.best_epoch is not None:
        buffer.add({"best_epoch": float(best.best_epoch + 1)}, last_step)
    epochs_run = diverged.epoch if diverged is not None else trainer.current_epoch
    quality = _quality(spec, data, best, epochs_run, tested=bool(test_metrics)) if rank == 0 else {}
    quality.update(smeared if rank == 0 else {})
    buffer.add(quality, last_step)
    buffer.close()
    return _LightningRun(
        test_metrics=test_metrics,
        best_epoch=None if best.best_epoch is None else best.best_epoch + 1,
        epochs_run=epochs_run,
        first_point_seconds=reporter.first_point_at,
        fit_seconds=fit_seconds,
        note=note,
        quality=quality,
    )


# --------------------------------------------------------------------------- fold ensembles
def _complete_ensemble(
    spec: RunSpec, trainee: Any, first: Any, run: _LightningRun, run_id: str, hooks: TrainHooks, plan: Any
) -> Any:
    """'Use all my data': fold 0's model is trained (``first``); train the other folds' models, each
    early-stopped on its own block of validation rows, average them into one model (the data kind's
    ``ensemble``), and test it on the test rows with every member, once. Updates ``run`` (its test
    metrics become the ensemble's; its quality gains the trivial guess's scores, each member's test
    scores and the measured prediction cost, :mod:`studio.core.ensembles`) and logs them; hands
    the members' kept validation scores to ``hooks.on_folds_kept`` (a search's trial scores itself on
    them). Returns the ensemble's LightningModule (what the bundle keeps)."""
    folds = [fit_fold(spec, fold, hooks.should_stop) for fold in range(1, spec.data.folds)]
    hooks.on_folds_kept([fold.kept for fold in folds])
    modules = [first, *(fold.module for fold in folds)]
    # each member's residuals on its own fold's validation rows, which it never trained on (distinct
    # blocks of the rows that are not test rows): the averaged model's own residuals on those rows would
    # be too small, four of five members learned each of them (hitters: R² 0.65 against 0.70, README)
    smeared = _smear(first, [(first, trainee.data), *((fold.module, fold.trainee.data) for fold in folds)])
    ensemble = trainee.ensemble(spec, [module.net.cpu() for module in modules])
    data = trainee.data
    found: dict[str, float] = {ensembles.MEMBERS: float(len(modules)), **smeared}
    found.update(_prediction_cost(ensemble.net, modules[0].net, data))
    if hooks.runs_test:
        run.test_metrics = _test_module(ensemble, data, plan)
        for number, module in enumerate(modules, start=1):
            for key, value in _test_module(module, data, plan).items():
                found[ensembles.member_key(number, key)] = value
        found.update(_baseline(spec, data))
    run.quality.update(found)
    step = max(tracking.logged_steps(run_id).values(), default=0)
    buffer = tracking.MetricBuffer(run_id, {})
    buffer.add({**run.test_metrics, **found}, step)
    buffer.close()
    return ensemble


def _smear(module: Any, held_out: list[tuple[Any, Any]]) -> dict[str, float]:
    """Duan's smearing for a regression target learned on a log scale (:func:`studio.core.runtime.smearing`):
    the factor from the residuals of each ``(model, DataModule)`` of ``held_out`` on that DataModule's
    validation rows (the kept weights), set on ``module`` (its test scores smeared predictions) and in the
    first DataModule's target state (which the bundle keeps, and a fold ensemble's module is built
    from). Returns what the run records (:data:`studio.core.quality.SMEAR`, ``SMEAR_ROWS``); empty, and
    nothing set, for any other target or a data kind without validation tensors."""
    import numpy as np

    from studio.core import quality
    from studio.core.runtime import smearing

    found = []
    for model, data in held_out:
        residuals = getattr(model, "log_residuals", None)
        tensors = getattr(data, "tensors", None)
        if residuals is None or not isinstance(tensors, dict) or "val" not in tensors:
            return {}
        values = residuals(tensors["val"])
        if values is None:
            return {}
        found.append(values)
    if not found:
        return {}
    residuals_all = np.concatenate(found)
    factor, rows = smearing(residuals_all), int(np.isfinite(residuals_all).sum())
    data = held_out[0][1]
    data.target_state = {**data.target_state, "smear": factor, "smear_rows": rows}
    module.target_smear = factor
    out = {quality.SMEAR: factor, quality.SMEAR_ROWS: float(rows)}
    r2 = _smeared_r2(found[0], data.tensors["val"][-1], data.target_state)
    return out | ({quality.SMEARED_VAL_R2: r2} if r2 is not None else {})


def _smeared_r2(residuals: Any, labels: Any, target_state: dict[str, Any]) -> float | None:
    """R² in the target's units of the smeared predictions on the rows of ``residuals`` (log-scale truth
    minus prediction, :func:`studio.core.runtime.log_residuals`) and ``labels`` (scaled, as encoded):
    the validation score that is comparable with the (smeared) test score."""
    import numpy as np

    from studio.core.runtime import label_units, target_units

    truth = label_units(labels.detach().float().cpu().numpy(), target_state)
    scaled = labels.detach().double().cpu().numpy().reshape(-1) - np.asarray(residuals) / target_state["std"]
    predicted = target_units(scaled, target_state)
    keep = np.isfinite(truth) & np.isfinite(predicted)
    truth, predicted = truth[keep], predicted[keep]
    spread = float(np.sum((truth - truth.mean()) ** 2)) if truth.size > 1 else 0.0
    if spread <= 0:
        return None
    return 1.0 - float(np.sum((truth - predicted) ** 2)) / spread


def _test_module(module: Any, data: Any, plan: Any) -> dict[str, float]:
    """``module``'s test scores on ``data``'s test rows (nothing logged)."""
    import pytorch_lightning as pl

    with tempfile.TemporaryDirectory(prefix="studio-test-") as root:
        trainer = pl.Trainer(
            accelerator=plan.accelerator,
            devices=plan.devices if plan.world_size == 1 else 1,
            precision=plan.precision,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=False,
            default_root_dir=root,
        )
        trainer.test(module, datamodule=data, verbose=False)
    return {key: float(value) for key, value in module.test_results.items()}


def _prediction_cost(ensemble: Any, member: Any, data: Any, repeats: int = 30) -> dict[str, float]:
    """What one prediction costs on this machine's CPU: the milliseconds to predict one row on its own
    through the whole ensemble and through one of its members (the median of ``repeats`` calls)."""
    import statistics

    import torch

    inputs = tuple(t[:1].cpu() for t in data.tensors["test"][:-1])

    def millis(net: Any) -> float:
        net = net.cpu().eval()
        times = []
        with torch.no_grad():
            net(*inputs)  # warm up
            for _ in range(repeats):
                started = time.perf_counter()
                net(*inputs)
                times.append(time.perf_counter() - started)
        return 1000 * statistics.median(times)

    return {ensembles.MS_PER_ROW: millis(ensemble), ensembles.MEMBER_MS_PER_ROW: millis(member)}


# --------------------------------------------------------------------------- a search's chosen model
@dataclass
class ChosenModelTest:
    """The one test of a search's chosen model: its test scores and the trivial guess's on the same
    rows (``baseline/*``, see :mod:`studio.core.quality`)."""

    test_metrics: dict[str, float]
    quality: dict[str, float]


def evaluate_chosen_model(spec: RunSpec, bundle_path: str | Path, run_id: str) -> ChosenModelTest:
    """Test the model a finished run bundled on its data set's test rows, once, and make the run whole.

    A search's trials train with :attr:`TrainHooks.runs_test` off, so the test rows play no part in
    choosing among them. This is the one look at them, for the chosen trial: the weights come from its
    bundle, the data from the same split (the spec's seed), the module and metrics from its data kind.
    The test metrics are logged to ``run_id`` (after its last step), the data kind logs what it adds
    (pictures: the confusion matrix) and the bundle is written again with the metrics, both in MLflow
    and at ``bundle_path``. The trivial guess is scored on the same test rows and logged too, with the
    verdict as tags. Returns both."""
    import pytorch_lightning as pl
    import torch

    from studio.bundle.layout import WEIGHTS_FILE
    from studio.data import get_dataset, load_profile

    dataset = get_dataset(spec.data.dataset_id)
    profile = load_profile(dataset.id)
    plan = resolve_device(spec.training.device, spec.training.precision)
    _quiet_lightning()
    _cheap_cuda_checks()
    prepared = _prepare(spec, dataset, profile, plan)
    trainee, data = prepared.trainee, prepared.data
    module = trainee.lightning_module(spec, max(1, data.steps_per_epoch), 1)
    if spec.data.use_all_data:  # the bundle holds fold models averaged into one
        others = [trainee.lightning_module(spec, 1, 1).net for _ in range(spec.data.folds - 1)]
        module = trainee.ensemble(spec, [module.net, *others])
    with zipfile.ZipFile(bundle_path) as zf, tempfile.TemporaryDirectory(prefix="studio-test-") as root:
        member = next(name for name in zf.namelist() if name.endswith(f"artifacts/{WEIGHTS_FILE}"))
        with zf.open(member) as weights:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        if hasattr(trainee, "load_bundled"):  # a kind whose bundle is not the network's whole state dict
            trainee.load_bundled(module, state, zf)
        else:
            module.net.load_state_dict(state)
        _bundled_smear(zf, module, data)
        trainer = pl.Trainer(
            accelerator=prepared.plan.accelerator,
            devices=prepared.plan.devices,
            precision=prepared.plan.precision,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=False,
            default_root_dir=root,
        )
        trainer.test(module, datamodule=data, verbose=False)
    metrics = dict(module.test_results)
    baseline = _baseline(spec, data)
    step = max(tracking.logged_steps(run_id).values(), default=0)
    buffer = tracking.MetricBuffer(run_id, {})
    buffer.add({**metrics, **baseline}, step)
    buffer.close()
    trainee.after_test(run_id, spec, module)
    with tempfile.TemporaryDirectory(prefix="studio-bundle-") as tmp:
        path = trainee.write_bundle(Path(tmp), spec, module, metrics)
        _publish_bundle(path, run_id, bundle_path)
    _tag_verdict(run_id, {**metrics, **baseline})
    return ChosenModelTest(metrics, baseline)


def _bundled_smear(zf: zipfile.ZipFile, module: Any, data: Any) -> None:
    """The smearing factor a bundle's target holds (a log-scale target's, :func:`_smear`), set on the
    module that tests its weights and in the target state the bundle is written again from (a fold
    ensemble's factor came from its members' own validation rows, which a fresh split does not hold)."""
    import json

    from studio.bundle.layout import INFO_FILE

    names = [name for name in zf.namelist() if name.endswith(f"artifacts/{INFO_FILE}")]
    target = json.loads(zf.read(names[0])).get("target", {}) if names else {}
    state = getattr(data, "target_state", None)
    if "smear" not in target or not isinstance(state, dict) or not hasattr(module, "target_smear"):
        return
    data.target_state = {**state, "smear": target["smear"], "smear_rows": target.get("smear_rows", 0)}
    module.target_smear = float(target["smear"])


# --------------------------------------------------------------------------- cross-validation folds
def fold_scores(spec: RunSpec, fold: int, should_stop: Any = None) -> dict[str, float]:
    """Train ``spec`` on cross-validation fold ``fold`` of its split (same test rows, another block of
    validation rows) and return the validation scores (``val/*``) of the epoch the run would keep (best
    by the spec's early-stopping metric, with its patience); empty when no epoch improved on nothing (a
    NaN from the start).

    Nothing is logged, bundled or checkpointed: a search's trial calls this for its folds after its
    run (fold 0) ended, to score its settings on more than one small validation split.
    ``should_stop()`` is polled before every training step; True raises :class:`TrainingCancelled`."""
    return fit_fold(spec, fold, should_stop).kept


@dataclass
class FoldModel:
    """One fold's model, fitted and restored to the epoch it keeps."""

    trainee: Any  # what the data kind prepared for this fold
    module: Any  # the LightningModule, its ``net`` holding the kept epoch's weights
    kept: dict[str, float]  # that epoch's validation scores (``val/*``); empty when none was kept


def fit_fold(spec: RunSpec, fold: int, should_stop: Any = None) -> FoldModel:
    """Fit ``spec`` on cross-validation fold ``fold`` of its split (see :func:`fold_scores`) and keep
    the model: the best epoch's weights are restored. Nothing is logged, bundled or checkpointed."""
    import pytorch_lightning as pl
    import torch

    from lightning_modules.callbacks import BestWeights
    from studio.data import get_dataset, load_profile, load_table
    from studio.modalities import modality_for

    class Stop(pl.Callback):
        def on_train_batch_start(self, *args: Any) -> None:
            if should_stop is not None and should_stop():
                raise TrainingCancelled("The run was cancelled.")

    dataset = get_dataset(spec.data.dataset_id)
    plan = resolve_device(spec.training.device, spec.training.precision)
    _quiet_lightning()
    torch.manual_seed(spec.data.seed)
    kind = modality_for(spec.task)
    data = kind.prepare(spec, dataset, load_table(dataset.id), load_profile(dataset.id), fold=fold)
    device = kind.device_plan(plan)
    module = data.lightning_module(spec, data.data.steps_per_epoch, 1)
    monitor = spec.early_stopping.metric
    patience = spec.early_stopping.patience if spec.early_stopping.enabled else None
    best = BestWeights(monitor, metric_mode(monitor), patience)
    with tempfile.TemporaryDirectory(prefix="studio-fold-") as root:
        trainer = pl.Trainer(
            accelerator=device.accelerator,
            devices=device.devices,
            precision=device.precision,
            max_epochs=spec.training.epochs,
            callbacks=[best, Stop()],
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=False,
            num_sanity_val_steps=0,
            default_root_dir=root,
        )
        trainer.fit(module, datamodule=data.data)  # (a NaN epoch never becomes the best one)
    best.restore(module)
    return FoldModel(data, module, {name: float(value) for name, value in best.best_metrics.items()})


# --------------------------------------------------------------------------- divergence
OPTIMIZER_TITLES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
USUAL_LEARNING_RATES = {"sgd": 0.01, "adam": 0.001, "adamw": 0.001}


def learning_rate_advice(optimizer: OptimizerSpec) -> str:
    """What to change after a divergence, for this optimiser and learning rate (lower case, one clause)."""
    name = OPTIMIZER_TITLES.get(optimizer.name, optimizer.name)
    usual = USUAL_LEARNING_RATES.get(optimizer.name, 0.001)
    rate = optimizer.learning_rate
    decay = (
        f" The weight decay {optimizer.weight_decay:g} is very high too; 0.0001 is usual."
        if optimizer.weight_decay >= 0.1
        else ""
    )
    if rate >= 10 * usual:
        return f"the learning rate {rate:g} is far too high for {name}; try {usual:g}.{decay}"
    if rate > usual:
        return f"the learning rate {rate:g} is too high for {name}; try {usual:g}.{decay}"
    return (
        f"try a learning rate 10 times smaller ({rate / 10:g}) or turn on gradient clipping "
        f"(advanced Training settings).{decay}"
    )


def _what_happened(diverged: Any) -> str:
    """``the loss became NaN`` and the like, from a ``TrainingDivergedSignal``."""
    if diverged.where == "weights":
        return "the model's weights became infinite"
    return "the loss became NaN (not a number)" if math.isnan(diverged.value) else "the loss became infinite"


def divergence_reason(diverged: Any, optimizer: OptimizerSpec) -> str:
    """The failure reason of a run that diverged with no usable epoch to keep."""
    return (
        f"The training diverged at epoch {diverged.epoch}, where {_what_happened(diverged)}: "
        f"{learning_rate_advice(optimizer)}"
    )


def divergence_note(diverged: Any, best_epoch: int, optimizer: OptimizerSpec) -> str:
    """The note of a run that diverged but kept its best earlier epoch (1-based)."""
    advice = learning_rate_advice(optimizer)
    return (
        f"Stopped at epoch {diverged.epoch} when {_what_happened(diverged)}; kept the best epoch, "
        f"{best_epoch}. {advice[:1].upper()}{advice[1:]}"
    )


def best_epoch_is_usable(best: Any, task: str, class_shares: list[float]) -> bool:
    """Whether the best epoch before a divergence is still a model worth keeping.

    The rule: its weights were kept and are all finite, and on the validation rows it beats a trivial
    guess that knows only the target. Regression: R² above 0 (better than always predicting the
    average). Classification: accuracy above the most common class's share (better than always guessing
    that class) and a loss below the cross-entropy of always answering the class shares (so its
    confidence is not wild either)."""
    if best.best_epoch is None or not best.best_state_is_finite():
        return False
    metrics = best.best_metrics
    if not task_info(task).classes:
        r2 = metrics.get("val/r2", math.nan)
        return math.isfinite(r2) and r2 > 0.0
    accuracy = metrics.get("val/accuracy", math.nan)
    loss = metrics.get("val/loss", math.nan)
    if not (math.isfinite(accuracy) and math.isfinite(loss)):
        return False
    if not class_shares:
        return True
    guess_loss = -sum(share * math.log(share) for share in class_shares if share > 0)
    return accuracy > max(class_shares) and loss < guess_loss


def _kept_after_divergence(diverged: Any, spec: RunSpec, best: Any, module: Any, buffer: Any) -> str:
    """The note when the best epoch is kept; raises the plain :class:`TrainingError` when it is not."""
    if not best_epoch_is_usable(best, spec.task, module.val_class_shares()):
        with contextlib.suppress(Exception):
            buffer.close()  # keep the curves up to the divergence
        raise TrainingError(divergence_reason(diverged, spec.optimizer))
    return divergence_note(diverged, best.best_epoch + 1, spec.optimizer)


def _test_switches(session: _Session) -> list[Any]:
    """Test-only callbacks, switched on by environment variables (documented in the README's testing
    section): an injected out-of-memory error (``STUDIO_TEST_OOM_AT_STEP``, in the first attempt only
    unless ``STUDIO_TEST_OOM_REPEAT=1``) and slow epochs (``STUDIO_TEST_SLOW_EPOCHS``)."""
    from lightning_modules.callbacks import InjectedOutOfMemory, SlowEpochs

    switches: list[Any] = []
    oom_step = os.environ.get(TEST_OOM_AT_STEP, "").strip()
    if oom_step and (not session.retried or os.environ.get(TEST_OOM_REPEAT, "").strip() == "1"):
        switches.append(InjectedOutOfMemory(int(oom_step)))
    slow = os.environ.get(TEST_SLOW_EPOCHS, "").strip()
    if slow:
        switches.append(SlowEpochs(float(slow)))
    return switches


def _plain_runtime_error(err: RuntimeError) -> Exception:
    text = str(err)
    if "out of memory" in text.lower():
        return TrainingError("The GPU ran out of memory: lower the batch size (or use a smaller network).")
    return err


def _publish_bundle(path: Path, run_id: str, bundle_out: str | Path | None) -> Path | None:
    """Log the bundle to the run and copy it to ``bundle_out`` (if given)."""
    tracking.client().log_artifact(run_id, str(path), os.path.dirname(tracking.BUNDLE_ARTIFACT))
    tracking.set_tags(run_id, {tracking.TAG_BUNDLE: tracking.BUNDLE_ARTIFACT})
    if bundle_out is None:
        return None
    out = Path(bundle_out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(path.read_bytes())
    return out
