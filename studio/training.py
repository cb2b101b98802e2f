"""Training as one plain function: ``train(spec) -> TrainResult``.

The CLI, the job worker and the tests all call :func:`train`. It owns one MLflow run: params, tags,
curves, test metrics, the spec, the data profile and the model bundle. A failure ends the run as
FAILED with the reason as a tag; a cancellation ends it as KILLED.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio import tracking
from studio.errors import StudioError, TrainingError
from studio.spec import RunSpec, metric_mode


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

    def on_run_started(self, run_id: str, experiment_id: str) -> None:
        """The MLflow run exists (called before the first epoch)."""

    def on_progress(self, progress: Progress) -> None:
        """Called at most every ~0.5 s and at each epoch end."""

    def should_stop(self) -> bool:
        """Polled before every training step; True stops the run as cancelled."""
        return False


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


@dataclass(frozen=True)
class DevicePlan:
    accelerator: str
    devices: Any
    precision: str
    description: str


def resolve_device(requested: str, precision: str) -> DevicePlan:
    """Map the spec's device and precision to Lightning's arguments (GPU when there is one)."""
    import torch

    has_cuda = torch.cuda.is_available()
    if requested.startswith("cuda") and not has_cuda:
        raise TrainingError(
            f"The spec asks for device '{requested}', but no GPU is available here; choose 'auto' or 'cpu'."
        )
    if requested == "cpu" or (requested == "auto" and not has_cuda):
        # Mixed precision gains nothing on CPU for these models and 16-bit is unsupported there.
        return DevicePlan("cpu", 1, "32-true" if precision != "bf16-mixed" else "bf16-mixed", "CPU")
    index = int(requested.split(":", 1)[1]) if ":" in requested else 0
    if index >= torch.cuda.device_count():
        raise TrainingError(
            f"GPU {index} does not exist: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0."
        )
    lightning_precision = {"32": "32-true"}.get(precision, precision)
    return DevicePlan("gpu", [index], lightning_precision, f"GPU {index}: {torch.cuda.get_device_name(index)}")


def _quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric", "mlflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*_pytree.*")


def train(
    spec: RunSpec,
    *,
    job_id: str | None = None,
    hooks: TrainHooks | None = None,
    bundle_out: str | Path | None = None,
    progress_bar: bool = False,
) -> TrainResult:
    """Train the model a spec describes, track it in MLflow and write its bundle.

    Raises :class:`~studio.errors.StudioError` subclasses (one plain sentence) for problems the user can
    fix, :class:`TrainingCancelled` when ``hooks.should_stop()`` asked to stop. Anything else is a crash;
    the MLflow run is then ended FAILED with the exception as the reason before it propagates.
    """
    from studio.datasets import get_dataset, load_profile, load_table

    hooks = hooks or TrainHooks()
    started = time.monotonic()
    dataset = get_dataset(spec.data.dataset_id)
    frame = load_table(dataset.id)
    profile = load_profile(dataset.id)
    plan = resolve_device(spec.training.device, spec.training.precision)

    import pytorch_lightning  # noqa: F401  (configures its loggers on import; quieten them after)
    import torch

    _quiet_lightning()
    from lightning_modules.tabular_data import TabularDataModule

    torch.manual_seed(spec.data.seed)
    data = TabularDataModule(frame, profile, spec)  # validates target, task and features before a run exists

    run_id, experiment_id = tracking.start_run(
        spec, job_id=job_id, extra_tags={tracking.TAG_STEPS_PER_EPOCH: str(data.steps_per_epoch)}
    )
    try:
        hooks.on_run_started(run_id, experiment_id)
        result = _fit_and_log(spec, data, plan, run_id, experiment_id, hooks, bundle_out, progress_bar, profile)
    except TrainingCancelled:
        tracking.end_run(run_id, "KILLED")
        raise
    except StudioError as err:
        tracking.end_run(run_id, "FAILED", str(err))
        raise
    except BaseException as err:
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        tracking.end_run(run_id, status, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        raise
    result.seconds = time.monotonic() - started
    result.ignored_columns = dict(data.plan.ignored)
    result.dropped_rows = data.dropped_rows
    return result


def _fit_and_log(
    spec: RunSpec,
    data: Any,
    plan: DevicePlan,
    run_id: str,
    experiment_id: str,
    hooks: TrainHooks,
    bundle_out: str | Path | None,
    progress_bar: bool,
    profile: dict[str, Any],
) -> TrainResult:
    import pytorch_lightning as pl

    from lightning_modules.callbacks import BestWeights, TrainingCancelledSignal, TrainingReporter
    from lightning_modules.registry import TabularShape, build_network
    from lightning_modules.tabular_module import TabularLightningModule

    mlflow_client = tracking.client()
    mlflow_client.log_text(run_id, spec.to_json(), tracking.SPEC_ARTIFACT)
    mlflow_client.log_dict(run_id, profile, tracking.PROFILE_ARTIFACT)
    tracking.set_tags(
        run_id,
        {
            tracking.TAG_DEVICE: plan.description,
            "studio.rows": str(data.sizes),
            "studio.batch_size": str(data.batch_size),
            "studio.ignored_columns": ", ".join(data.plan.ignored) or "none",
        },
    )

    shape = TabularShape(data.preprocessor.n_numeric, data.preprocessor.cardinalities, data.n_out)
    net = build_network(spec.architecture.name, spec.architecture.params, shape)
    monitor = spec.early_stopping.metric
    mode = metric_mode(monitor)
    steps_per_epoch = data.steps_per_epoch
    module = TabularLightningModule(
        net,
        spec.task,
        data.n_out,
        spec.optimizer,
        spec.scheduler,
        monitor,
        spec.training.epochs,
        target_mean=data.target_state.get("mean", 0.0),
        target_std=data.target_state.get("std", 1.0),
        batch_size=data.batch_size,
        steps_per_epoch=steps_per_epoch,
        gradient_clip=spec.training.gradient_clip,
    )

    buffer = tracking.MetricBuffer(run_id)

    def report(raw: dict[str, Any]) -> None:
        hooks.on_progress(Progress(**raw))

    reporter = TrainingReporter(buffer.add, buffer.flush, report, hooks.should_stop, steps_per_epoch)
    best = BestWeights(monitor, mode)
    callbacks: list[pl.Callback] = [reporter, best]
    if spec.early_stopping.enabled:
        callbacks.append(
            pl.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=spec.early_stopping.patience, check_finite=False)
        )
    with tempfile.TemporaryDirectory(prefix="studio-trainer-") as root:
        trainer = pl.Trainer(
            accelerator=plan.accelerator,
            devices=plan.devices,
            precision=plan.precision,
            max_epochs=spec.training.epochs,
            callbacks=callbacks,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress_bar,
            num_sanity_val_steps=0,
            default_root_dir=root,
            deterministic=False,
        )
        fit_started = time.perf_counter()
        try:
            trainer.fit(module, datamodule=data)
        except BaseException as err:
            with contextlib.suppress(Exception):
                buffer.close()  # keep the curves written so far
            if isinstance(err, TrainingCancelledSignal):
                raise TrainingCancelled("The run was cancelled.") from None
            if isinstance(err, RuntimeError):
                raise _plain_runtime_error(err) from err
            raise
        buffer.flush()
        fit_seconds = time.perf_counter() - fit_started
        if trainer.interrupted:
            raise KeyboardInterrupt
        best.restore(module)
        tested = trainer.test(module, datamodule=data, verbose=False)
    test_metrics = {k: float(v) for k, v in (tested[0] if tested else {}).items()}
    buffer.add(test_metrics, trainer.global_step)
    if best.best_epoch is not None:
        buffer.add({"best_epoch": float(best.best_epoch + 1)}, trainer.global_step)
    buffer.close()

    bundle_path = _write_bundle(spec, data, module, profile, test_metrics, run_id, bundle_out)
    tracking.end_run(run_id, "FINISHED")
    return TrainResult(
        run_id=run_id,
        experiment_id=experiment_id,
        test_metrics=test_metrics,
        bundle_path=bundle_path,
        status="FINISHED",
        best_epoch=None if best.best_epoch is None else best.best_epoch + 1,
        epochs_run=trainer.current_epoch,
        first_point_seconds=reporter.first_point_at,
        fit_seconds=fit_seconds,
        train_rows=data.sizes["train"],
    )


def _plain_runtime_error(err: RuntimeError) -> Exception:
    text = str(err)
    if "out of memory" in text.lower():
        return TrainingError("The GPU ran out of memory: lower the batch size (or use a smaller network).")
    return err


def _write_bundle(
    spec: RunSpec,
    data: Any,
    module: Any,
    profile: dict[str, Any],
    test_metrics: dict[str, float],
    run_id: str,
    bundle_out: str | Path | None,
) -> Path:
    from studio.bundle import write_tabular_bundle

    with tempfile.TemporaryDirectory(prefix="studio-bundle-") as tmp:
        path = write_tabular_bundle(
            Path(tmp) / "model.zip",
            spec=spec,
            preprocessing=data.preprocessor.state,
            target=data.target_state,
            network_config=dict(module.net.config),
            state_dict={k: v.detach().cpu() for k, v in module.net.state_dict().items()},
            sample_rows=data.frame.iloc[data.test_idx[:5]].drop(columns=[spec.data.target]),
            metrics=test_metrics,
        )
        tracking.client().log_artifact(run_id, str(path), os.path.dirname(tracking.BUNDLE_ARTIFACT))
        tracking.set_tags(run_id, {tracking.TAG_BUNDLE: tracking.BUNDLE_ARTIFACT})
        if bundle_out is None:
            return None  # type: ignore[return-value]
        out = Path(bundle_out).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(path.read_bytes())
        return out
