"""The ``ray`` executor: jobs train on a Ray cluster, submitted through Ray's Jobs API.

``STUDIO_EXECUTOR=ray`` and ``RAY_ADDRESS`` (the cluster's dashboard, e.g. ``http://ray-head:8265``) pick
it; ``pip install -r requirements-cluster.txt`` installs Ray. The studio keeps its own queue, job store
and pages; for each job the scheduler gives a slot, this executor submits one Ray job
(``ray job submit`` semantics) and Ray decides which node and GPU runs it:

- entrypoint ``python -m studio.cli.worker --ray JOB_ID`` (the same worker and hooks as a local job's,
  :func:`run_remote`; a search's trial reports to its study, which must then be in a database the nodes
  reach, ``STUDIO_SEARCH_STORAGE``) with ``entrypoint_num_gpus=N`` for a GPU
  job on N devices (``training.devices``; Ray sets its ``CUDA_VISIBLE_DEVICES`` and the run trains with
  DDP on them, :mod:`studio.engine.ddp`), ``entrypoint_num_cpus=N`` for a CPU job;
- ``runtime_env``: the studio's code as ``working_dir`` (this checkout, without data, runs or tests; with
  ``STUDIO_RAY_SHIP_CODE=0`` the nodes' image must already hold it, e.g. ``deploy/``), and
  ``env_vars`` carrying the job (its spec, its search and trial), the MLflow address (and ``MLFLOW_TRACKING_USERNAME/PASSWORD``)
  and the data set's MLflow run;
- the slots are the cluster's GPUs (one job each) and ``STUDIO_CPU_SLOTS`` CPU jobs, else one per CPU
  of the cluster (read from the dashboard, again every 30 s, so nodes that join count).

**Data reaches the node through MLflow**: before the first job of a data set, its folder (``data.parquet``,
``profile.json``, ``meta.json``, pictures) is uploaded once as the artifacts of a run in the
``studio-datasets`` experiment (the pages never list it); the node downloads it into its own
``STUDIO_HOME`` (``STUDIO_NODE_HOME``, default ``<tmp>/studio-node``) unless it has it already (data
set ids carry their content hash), and the training run records it with ``mlflow.log_input``.

**What maps to what** (the job store stays the studio's truth; Ray's state is read every ~0.5 s):

- studio queued: not yet submitted (no free slot); Ray ``PENDING``/``RUNNING``: the studio's running
  (progress, the MLflow run id and notes come from the job's log lines, see :data:`LINE`);
- Ray ``SUCCEEDED``: succeeded (the bundle is fetched from MLflow into the job's folder, so Predict and
  the Runs page's download work as for a local job);
- Ray ``STOPPED``: cancelled (``jobs cancel`` and the page's Stop call Ray's ``stop_job``: SIGTERM, then
  SIGKILL after ``RAY_JOB_STOP_WAIT_TIME_S``);
- Ray ``FAILED``: failed with the worker's own reason when it wrote one, else with Ray's message (a lost
  node, a killed worker, a runtime_env that could not be set up); its MLflow run is closed FAILED. When
  the node had sent a checkpoint first, the job is interrupted instead (its run KILLED) and can resume;
- the run page's log is Ray's job log, copied into the job's log file while it runs.

**Resuming**: the node sends its latest checkpoint to MLflow (:class:`CheckpointShipper`); a Ray job that
died or was cancelled gets it back into the job's folder, which is what ``jobs resume`` and the Resume
button look for; the resumed job's node fetches it from MLflow and continues the same MLflow run.
No ray import at module level: the studio imports this module only when the executor is chosen.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core import settings
from studio.core.errors import JobError
from studio.engine.checkpoints import checkpoint_file, latest_checkpoint
from studio.jobs import store
from studio.jobs.executors.base import Ended, Slot
from studio.jobs.store import CANCELLED, FAILED, INTERRUPTED, RUNNING, SUCCEEDED

if TYPE_CHECKING:
    from studio.jobs.store import Job

log = logging.getLogger("studio.scheduler")

ADDRESS_ENV = "RAY_ADDRESS"
SHIP_CODE_ENV = "STUDIO_RAY_SHIP_CODE"
PYTHON_ENV = "STUDIO_RAY_PYTHON"
TEST_ENTRYPOINT_ENV = "STUDIO_TEST_RAY_ENTRYPOINT"
NODE_HOME_ENV = "STUDIO_NODE_HOME"
JOB_ENV = "STUDIO_REMOTE_JOB"
DATASET_RUN_ENV = "STUDIO_REMOTE_DATASET_RUN"
SHIPPED_BASE_MODEL_ENV = "STUDIO_BASE_MODEL_SHIPPED"  # (studio.modalities.llm.ship.SHIPPED_ENV)
SEARCH_STORAGE_ENV = settings.SEARCH_STORAGE_ENV
PASSED_ENV = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    SEARCH_STORAGE_ENV,  # where a search's trials report (a database the nodes reach)
)
PASSED_PREFIXES = ("STUDIO_TEST_", "STUDIO_CHECKPOINT_SECONDS", "STUDIO_RAY_CHECKPOINT_SECONDS")
DATASETS_EXPERIMENT = "studio-datasets"
DATASET_ARTIFACT = "dataset"
TAG_DATASET_RUN = "studio.dataset_run"
TAG_EXECUTOR = "studio.executor"
TAG_NODE = "studio.node"
META_JOB = "studio_job"
RESUME_ENV = "STUDIO_REMOTE_RESUME_RUN"
CHECKPOINT_UPLOAD_ENV = "STUDIO_RAY_CHECKPOINT_SECONDS"
DEFAULT_CHECKPOINT_UPLOAD_SECONDS = 30.0
CHECKPOINT_ARTIFACT = "checkpoints"
LINE = "@studio "  # the remote worker's lines the executor reads: ``@studio {"run": …}``
CODE_EXCLUDES = [
    ".git",
    "studio_data",
    "mlruns",
    "test-artifacts",
    "tests",
    "bench",
    "**/__pycache__",
    "*.zip",
    ".venv",
    ".ruff_cache",
    ".pytest_cache",
]
SLOTS_REFRESH_SECONDS = 30.0
LOG_COPY_SECONDS = 1.0
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
REASON_RAY_FAILED = "Ray ended the job: {message} Its log is {log}."
REASON_REFUSED = "Ray did not accept the job ({error}); is the cluster at {address} up?"
REASON_NO_UPLOAD = (
    "The data set {dataset} could not be sent to the MLflow server at {uri}, where the Ray machines fetch it "
    "({error})."
)
REASON_INTERRUPTED = (
    "Ray ended the job: {message} Its progress up to epoch {epoch} is saved: resume it with the Resume "
    "button on its page or `python -m studio jobs resume {job_id}`. Its log is {log}."
)
REASON_STOPPED = "Stopped from Ray (not from the studio)."
REASON_NO_STUDY = (
    "A search's trial on Ray reports to the search's study, which the Ray machines cannot reach in the "
    "studio's folder: set STUDIO_SEARCH_STORAGE to a database URL that the studio and the Ray machines "
    "both reach (e.g. the MLflow server's PostgreSQL), then start the search again."
)
_REPO_ROOT = Path(__file__).resolve().parents[3]


def entrypoint(job_id: str) -> str:
    """The command Ray runs for a job (``STUDIO_TEST_RAY_ENTRYPOINT``, with ``{python}`` and ``{job_id}``,
    replaces it in tests that need a stand-in worker)."""
    python = os.environ.get(PYTHON_ENV, "").strip() or "python"
    template = (
        os.environ.get(TEST_ENTRYPOINT_ENV, "").strip() or "{python} -m studio.cli.worker --ray {job_id}"
    )
    return template.format(python=python, job_id=job_id)


def ray_address() -> str:
    address = os.environ.get(ADDRESS_ENV, "").strip()
    if not address:
        raise JobError(
            "STUDIO_EXECUTOR=ray needs RAY_ADDRESS, the Ray cluster's dashboard address "
            "(e.g. http://ray-head:8265)."
        )
    return address if "://" in address else f"http://{address}"


def _client(address: str):
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise JobError(
            "STUDIO_EXECUTOR=ray needs Ray: install it with `pip install -r requirements-cluster.txt`."
        ) from None
    return JobSubmissionClient(address)


# --------------------------------------------------------------------------- data sets through MLflow
def _datasets_experiment(mlflow_client: Any) -> str:
    existing = mlflow_client.get_experiment_by_name(DATASETS_EXPERIMENT)
    if existing is not None:
        return existing.experiment_id
    location = None
    if settings.tracking_uri().startswith("sqlite:"):
        location = (settings.artifact_root() / "_datasets").as_uri()
    try:
        return mlflow_client.create_experiment(DATASETS_EXPERIMENT, artifact_location=location)
    except Exception:  # another process created it meanwhile
        return mlflow_client.get_experiment_by_name(DATASETS_EXPERIMENT).experiment_id


def publish_dataset(dataset_id: str) -> str:
    """The MLflow run whose artifacts hold the data set's folder, uploaded now if no finished one exists
    (once per data set: its id carries its content hash). Returns the run id."""
    from studio import tracking
    from studio.data import get_dataset

    info = get_dataset(dataset_id)
    mlflow_client = tracking.client()
    experiment_id = _datasets_experiment(mlflow_client)
    found = mlflow_client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{tracking.TAG_DATASET}` = '{dataset_id}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    run = mlflow_client.create_run(
        experiment_id,
        run_name=dataset_id,
        tags={
            tracking.TAG_DATASET: dataset_id,
            tracking.TAG_KIND: "dataset",
            "studio.dataset_name": info.name,
        },
    )
    try:
        mlflow_client.log_artifacts(run.info.run_id, str(info.path), DATASET_ARTIFACT)
    except BaseException:
        mlflow_client.set_terminated(run.info.run_id, "FAILED")
        raise
    mlflow_client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def fetch_dataset(dataset_id: str, run_id: str) -> bool:
    """Make the data set local (this process's ``STUDIO_HOME``) from its MLflow run; False when it was
    here already."""
    from studio import tracking
    from studio.core.errors import DatasetError
    from studio.data import get_dataset
    from studio.data.store import datasets_root

    try:
        get_dataset(dataset_id)
        return False
    except DatasetError:
        pass
    root = datasets_root()
    staging = Path(tempfile.mkdtemp(prefix=f".fetch-{dataset_id}-", dir=root))
    tracking.client().download_artifacts(run_id, DATASET_ARTIFACT, str(staging))
    try:
        (staging / DATASET_ARTIFACT).rename(root / dataset_id)
    except OSError:  # another job on this node fetched it meanwhile
        get_dataset(dataset_id)
    finally:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return True


def _ship_base_model(job: Job) -> dict[str, Any] | None:
    """A fine-tuning job whose base model is a folder here: that folder, uploaded to MLflow for the node
    (:func:`studio.modalities.llm.ship.publish_for`); ``None`` for any other job."""
    from studio.modalities.llm.ship import publish_for

    return publish_for(job.spec)


# --------------------------------------------------------------------------- the executor
def _parse_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        at = line.find(LINE)
        if at < 0:
            continue
        try:
            found.append(json.loads(line[at + len(LINE) :]))
        except ValueError:
            continue
    return found


class RayExecutor:
    """Ray's Jobs API as the studio's executor (see the module's docstring)."""

    name = "ray"

    def __init__(self, *, address: str | None = None, cpu_slots: int | None = None) -> None:
        self._address = address
        self.address = address or os.environ.get(ADDRESS_ENV, "").strip()
        self._client: Any = None
        self._tried = -1e9
        self.problem: str | None = None  # why Ray cannot be reached (jobs submitted meanwhile fail with it)
        self._connect()
        self._warmed = False
        self._cpu_slots = cpu_slots
        self._slots: list[Slot] = []
        self._slots_read = -1e9
        self.watching: dict[str, str] = {}  # studio job id -> Ray submission id
        self._seen: dict[str, dict[str, Any]] = {}  # job id -> what its lines said so far
        self._copied: dict[str, float] = {}
        self._datasets: dict[str, str] = {}
        if settings.tracking_uri().startswith(("sqlite:", "file:")) or "://" not in settings.tracking_uri():
            log.warning(
                "the Ray executor with a local MLflow store (%s): only nodes on this machine can reach it; "
                "point MLFLOW_TRACKING_URI at an MLflow server for a real cluster",
                settings.tracking_uri(),
            )

    def _connect(self) -> Any:
        """The Jobs API client, made on first need (again at most every 10 s while Ray cannot be reached,
        so a scheduler started before the cluster, or without Ray installed, says why on each job)."""
        if self._client is None and time.monotonic() - self._tried >= 10.0:
            self._tried = time.monotonic()
            try:
                self.address = self._address or ray_address()
                self._client = _client(self.address)
                self.problem = None
            except JobError as err:
                self.problem = str(err)
            except Exception as err:  # the dashboard does not answer
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
                self.problem = f"The Ray cluster at {self.address} does not answer ({first})."
            if self.problem:
                log.warning("ray executor: %s", self.problem)
        return self._client

    @property
    def client(self) -> Any:
        client = self._connect()
        if client is None:
            raise JobError(self.problem or "Ray cannot be reached.")
        return client

    # ---- slots
    def slots(self) -> list[Slot]:
        if self._connect() is None:  # every job gets a slot, and its submission fails with the reason
            return [Slot("cuda:0", ""), Slot("cpu:0", "")]
        if time.monotonic() - self._slots_read > SLOTS_REFRESH_SECONDS:
            self._slots_read = time.monotonic()
            try:
                cpus, gpus = self._cluster_size()
            except Exception as err:  # the dashboard is down for a moment: keep what was known
                log.warning("could not read the Ray cluster's size from %s: %s", self.address, err)
                if not self._slots:
                    self._slots = [Slot("cpu:0", "")]
                return self._slots
            cpu_slots = self._cpu_slots or _env_cpu_slots() or max(1, int(cpus))
            self._slots = [Slot(f"cuda:{i}", "") for i in range(int(gpus))] + [
                Slot(f"cpu:{i}", "") for i in range(cpu_slots)
            ]
        return self._slots

    def _cluster_size(self) -> tuple[float, float]:
        """Total CPUs and GPUs of the cluster, from the dashboard's cluster status."""
        import urllib.request

        with urllib.request.urlopen(f"{self.address}/api/cluster_status", timeout=5) as response:
            data = json.load(response)["data"]
        usage = data["clusterStatus"]["loadMetricsReport"]["usage"]
        return float(usage.get("CPU", [0, 0])[1]), float(usage.get("GPU", [0, 0])[1])

    # ---- submit
    def submit(self, job: Job, slot: Slot) -> None:
        if self._connect() is None:
            store.finish_job(job.id, FAILED, reason=self.problem)
            return
        if job.search_id and not os.environ.get(SEARCH_STORAGE_ENV, "").strip():
            store.finish_job(job.id, FAILED, reason=REASON_NO_STUDY)
            return
        store.log_path(job.id).write_text(f"Submitting to the Ray cluster at {self.address}…\n")
        dataset_id = job.spec.data.dataset_id
        try:
            dataset_run = self._datasets.get(dataset_id) or publish_dataset(dataset_id)
        except Exception as err:  # noqa: BLE001 - the job cannot start without its data on the server
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            reason = REASON_NO_UPLOAD.format(dataset=dataset_id, uri=settings.tracking_uri(), error=first)
            store.finish_job(job.id, FAILED, reason=reason)
            log.warning("job %s: %s", job.id, reason)
            return
        self._datasets[dataset_id] = dataset_run
        try:
            shipped = _ship_base_model(job)
        except Exception as err:  # noqa: BLE001 - too large, or MLflow refused it: the job cannot start
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            store.finish_job(job.id, FAILED, reason=first)
            log.warning("job %s: %s", job.id, first)
            return
        try:
            submission = f"studio-{job.id}-{int(time.time() * 1000)}"
            self.client.submit_job(
                entrypoint=entrypoint(job.id),
                submission_id=submission,
                runtime_env=self.runtime_env(job, dataset_run, shipped),
                metadata={META_JOB: job.id, "studio_name": job.name[:200]},
                **entrypoint_resources(slot),
            )
        except Exception as err:  # noqa: BLE001 - any refusal ends the job with the reason
            reason = REASON_REFUSED.format(error=str(err).strip().splitlines()[0][:300], address=self.address)
            store.finish_job(job.id, FAILED, reason=reason)
            log.warning("job %s: %s", job.id, reason)
            return
        self.watching[job.id] = submission
        log.info("job %s: submitted to Ray as %s (%s)", job.id, submission, slot.name)

    def runtime_env(
        self, job: Job, dataset_run: str, shipped: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        env = {
            JOB_ENV: json.dumps(dataclasses.asdict(job), default=str),
            DATASET_RUN_ENV: dataset_run,
            "MLFLOW_TRACKING_URI": settings.tracking_uri(),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "PYTHONUNBUFFERED": "1",
        }
        for key, value in os.environ.items():
            if key in PASSED_ENV or key == NODE_HOME_ENV or key.startswith(PASSED_PREFIXES):
                env[key] = value
        if shipped:  # the base model's folder, sent through MLflow (studio.modalities.llm.ship)
            env[SHIPPED_BASE_MODEL_ENV] = json.dumps(shipped)
        if job.mlflow_run_id and store.job_checkpoint(job.id) is not None:
            env[RESUME_ENV] = job.mlflow_run_id  # the node fetches the run's saved progress from MLflow
        runtime: dict[str, Any] = {"env_vars": env}
        if os.environ.get(SHIP_CODE_ENV, "1").strip() != "0":
            runtime["working_dir"] = str(_REPO_ROOT)
            runtime["excludes"] = CODE_EXCLUDES
        return runtime

    # ---- watching
    def _submission(self, job_id: str) -> tuple[str, str] | None:
        """The newest Ray job of this studio job: (submission id, status), or None."""
        if job_id in self.watching:
            return self.watching[job_id], ""
        mine = [j for j in self.client.list_jobs() if (j.metadata or {}).get(META_JOB) == job_id]
        if not mine:
            return None
        newest = max(mine, key=lambda j: j.start_time or 0)
        return newest.submission_id, str(newest.status)

    def started(self, job_id: str) -> bool:
        """Ours when Ray knows it (after a scheduler restart the job is adopted and watched again)."""
        if job_id in self.watching:
            return True
        try:
            found = self._submission(job_id)
        except Exception:
            return True  # Ray cannot be asked now: leave the job alone rather than call it dead
        if found is None:
            return False
        self.watching[job_id] = found[0]
        return True

    def alive(self, job: Job) -> bool:
        try:
            found = self._submission(job.id)
            if found is None:
                return False
            return str(self.client.get_job_status(found[0]).value) not in TERMINAL
        except Exception:
            return True  # cannot tell: do not end a job because the dashboard blinked

    def poll(self) -> list[Ended]:
        ended = []
        for job_id, submission in list(self.watching.items()):
            try:
                info = self.client.get_job_info(submission)
            except Exception as err:
                log.warning("job %s: could not read Ray job %s: %s", job_id, submission, err)
                continue
            status = str(getattr(info.status, "value", info.status))
            final = status in TERMINAL
            if final or time.monotonic() - self._copied.get(job_id, 0.0) >= LOG_COPY_SECONDS:
                self._follow(job_id, submission)
            if final:
                del self.watching[job_id]
                self._copied.pop(job_id, None)
                self._settle(job_id, status, info.message or "", self._seen.pop(job_id, {}))
                ended.append(Ended(job_id, None, 0 if status == "SUCCEEDED" else 1))
        return ended

    def _follow(self, job_id: str, submission: str) -> None:
        """Copy Ray's log of the job into its log file and take over what its lines say."""
        self._copied[job_id] = time.monotonic()
        try:
            text = self.client.get_job_logs(submission)
        except Exception:
            return
        store.log_path(job_id).write_text(
            f"Ray job {submission} on the cluster at {self.address}\n"
            + "".join(line + "\n" for line in text.splitlines() if LINE not in line)
        )
        seen = self._seen.setdefault(job_id, {"notes": 0})
        lines = _parse_lines(text)
        for item in lines:
            if "run" in item and seen.get("run") != item["run"]:
                seen["run"] = item["run"]
                store.set_run(job_id, item["run"], item["experiment"])
            if "result" in item:
                seen["result"] = item
            if "checkpoint" in item:
                seen["checkpoint"] = max(seen.get("checkpoint", 0), int(item["checkpoint"]))
            if "trial_state" in item and seen.get("trial_state") != item["trial_state"]:
                seen["trial_state"] = item["trial_state"]
                store.set_trial_state(job_id, item["trial_state"])
        notes = [item["note"] for item in lines if "note" in item]
        for note in notes[seen["notes"] :]:
            store.add_note(job_id, note)
        seen["notes"] = len(notes)
        progress = [item["progress"] for item in lines if "progress" in item]
        if progress and store.set_progress(job_id, **progress[-1]) and not seen.get("stop_sent"):
            seen["stop_sent"] = True  # cancel asked from a process that could not reach Ray
            self.client.stop_job(submission)

    def _settle(self, job_id: str, status: str, message: str, seen: dict[str, Any]) -> None:
        """End the studio job as Ray's job ended (the job store is what the pages read)."""
        try:
            job = store.get_job(job_id)
        except JobError:
            return
        if job.state != RUNNING:
            return
        result = seen.get("result") or {}
        run_id = seen.get("run") or job.mlflow_run_id
        state, reason, outcome = FAILED, None, {}
        if status == "SUCCEEDED":  # the worker exits 0 only after a finished run and its bundle
            state, reason = SUCCEEDED, result.get("reason")
            outcome = {
                "test_metrics": result.get("test_metrics") or {},
                "quality": result.get("quality") or {},
            }
            if run_id:
                try:
                    outcome["bundle_path"] = self._fetch_bundle(job_id, run_id)
                except Exception as err:  # the run is fine; the page says the model file is missing
                    log.warning("job %s: could not fetch the bundle from MLflow: %s", job_id, err)
        elif job.cancel_requested or result.get("result") == CANCELLED:
            state, reason = CANCELLED, result.get("reason") or "Cancelled on request."  # or pruned: why
            self._fetch_checkpoint(job_id, run_id, seen.get("checkpoint"))  # so it can be resumed
        elif result.get("result") in (FAILED, "interrupted") and result.get("reason"):
            state, reason = FAILED, result["reason"]
        elif status == "STOPPED":
            state, reason = CANCELLED, REASON_STOPPED
            self._fetch_checkpoint(job_id, run_id, seen.get("checkpoint"))
        else:
            # Ray appends the job's last log lines to its message: those are in the log file already.
            message = " ".join(message.split(", last available logs")[0].split())[:600] or "no reason given"
            message = message.rstrip(".") + "."
            reason = REASON_RAY_FAILED.format(message=message, log=store.log_path(job_id))
            epoch = self._fetch_checkpoint(job_id, run_id, seen.get("checkpoint"))
            if epoch is not None:  # a killed worker or a lost machine, after it saved its progress
                state = INTERRUPTED
                reason = REASON_INTERRUPTED.format(
                    message=message, epoch=epoch, job_id=job_id, log=store.log_path(job_id)
                )
        if state in (SUCCEEDED, FAILED):
            store.remove_checkpoints(job_id)  # a resumed job's copy: nothing to resume any more
        if run_id and state != SUCCEEDED:  # first, so the run is closed once the job reads as ended
            _close_run(run_id, "FAILED" if state == FAILED else "KILLED", reason)
        if store.finish_job(job_id, state, reason=reason, **outcome):
            log.info("job %s: Ray %s -> %s", job_id, status, state)

    @staticmethod
    def _fetch_checkpoint(job_id: str, run_id: str | None, epoch: int | None) -> int | None:
        """Download the checkpoint the node sent to MLflow into the job's folder (what ``jobs resume`` and
        the Resume button look for); its epoch, or None when there is none."""
        if not run_id or not epoch:
            return None
        from studio import tracking

        name = checkpoint_file(Path("."), epoch).name
        folder = store.checkpoint_dir(job_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fetched = tracking.client().download_artifacts(
                run_id, f"{CHECKPOINT_ARTIFACT}/{name}", str(folder)
            )
            Path(fetched).replace(folder / name)
            (folder / CHECKPOINT_ARTIFACT).rmdir()
        except Exception as err:
            log.warning("job %s: could not fetch its checkpoint from MLflow: %s", job_id, err)
        checkpoint = store.job_checkpoint(job_id)
        return checkpoint.epoch if checkpoint is not None else None

    @staticmethod
    def _fetch_bundle(job_id: str, run_id: str) -> str:
        from studio import tracking

        folder = store.job_dir(job_id)
        fetched = Path(tracking.download_bundle(run_id, str(folder / ".bundle")))
        target = folder / "model.zip"
        fetched.replace(target)
        return str(target)

    # ---- the rest of the protocol
    def cancel(self, job: Job, *, force: bool = False) -> bool:
        """Ray's ``stop_job`` (SIGTERM to the worker, SIGKILL after ``RAY_JOB_STOP_WAIT_TIME_S``)."""
        try:
            found = self._submission(job.id)
            return bool(found) and bool(self.client.stop_job(found[0]))
        except Exception as err:
            log.warning("job %s: could not stop its Ray job: %s", job.id, err)
            return False

    def logs(self, job: Job) -> Path:
        return store.log_path(job.id)

    def settling(self, running: set[str]) -> set[str]:
        return set()  # every job is a Ray task of its own: nothing to wait for

    def keep_warm(self, busy: set[str]) -> None:
        """The scheduler's first pass: MLflow (seconds to import) is readied in a thread, not when a job's
        data set is sent. Only the scheduler asks: a process that only counts the slots (a search's
        driver) imports MLflow itself, and two threads importing it at once break its protobuf files."""
        if not self._warmed:
            self._warmed = True
            if "mlflow" not in sys.modules:
                threading.Thread(target=_warm_mlflow, name="warm-mlflow", daemon=True).start()

    def running(self) -> bool:
        return bool(self.watching)

    def shutdown(self) -> None:
        """Running Ray jobs go on; a new scheduler adopts them."""


def _close_run(run_id: str, status: str, reason: str | None) -> None:
    """Close the job's MLflow run unless its worker did (a worker killed or lost with its node did not).
    A cancelled run is KILLED even when a SIGTERM handler of the training stack closed it FAILED."""
    from studio import tracking

    try:
        now = tracking.client().get_run(run_id).info.status
        if now == "RUNNING" or (status == "KILLED" and now == "FAILED"):
            tracking.end_run(run_id, status, None if status == "KILLED" else reason)
    except Exception:
        log.exception("could not mark MLflow run %s as %s", run_id, status)


def _warm_mlflow() -> None:
    from studio import tracking

    try:
        tracking.client()
    except Exception as err:  # said again, with the job, when a data set cannot be sent
        log.warning("the MLflow store at %s cannot be opened yet: %s", settings.tracking_uri(), err)


def _env_cpu_slots() -> int | None:
    raw = os.environ.get("STUDIO_CPU_SLOTS", "").strip()
    try:
        return max(1, int(raw)) if raw else None
    except ValueError:
        return None


# --------------------------------------------------------------------------- the worker on the node
def _say(**item: Any) -> None:
    print(LINE + json.dumps(item, allow_nan=False, default=str), flush=True)


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    import math

    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}


def node_home() -> Path:
    return Path(os.environ.get(NODE_HOME_ENV) or Path(tempfile.gettempdir()) / "studio-node")


class LineLink:
    """Where a job's state goes on a Ray node, which has no job store: ``@studio`` lines on stdout (Ray's
    job log), which the executor reads into the studio's job store (:meth:`RayExecutor._follow`). The
    worker's own hooks write through it (:func:`studio.jobs.worker.train_job`), as they write through
    the job store on the studio's machine."""

    def __init__(self, job: Job, dataset_run: str, shipper: CheckpointShipper, resumed: bool) -> None:
        self.job, self.dataset_run, self.shipper, self.resumed = job, dataset_run, shipper, resumed

    def set_run(self, run_id: str, experiment_id: str) -> None:
        _say(run=run_id, experiment=experiment_id)
        if not self.resumed:
            _log_input(run_id, self.job.spec.data.dataset_id, self.dataset_run)
        self.shipper.start(run_id)

    def set_progress(self, *, metrics: dict[str, float], **progress: Any) -> bool:
        _say(progress={**progress, "metrics": _finite(metrics)})
        return False  # a cancel reaches the node as Ray's stop_job (SIGTERM)

    def add_note(self, sentence: str) -> None:
        _say(note=sentence)

    def cancel_requested(self) -> bool:
        return False

    def set_trial_state(self, trial_state: str) -> None:
        _say(trial_state=trial_state)


def run_remote(job_id: str, wrap_hooks: Any = None) -> int:
    """Train one job on a Ray node with the worker's own hooks (:func:`studio.jobs.worker.train_job`,
    plus ``wrap_hooks``, e.g. a search's trial's) writing through :class:`LineLink`; metrics and the
    bundle go to MLflow. The node keeps its files in its own ``STUDIO_HOME`` (:func:`node_home`)."""
    from studio.jobs import worker

    os.environ["STUDIO_HOME"] = str(node_home())
    flag = worker.StopFlag()
    flag.install()  # Ray's stop_job
    job = store.Job(**json.loads(os.environ[JOB_ENV]))
    dataset_run = os.environ[DATASET_RUN_ENV]
    folder = settings.studio_home() / "jobs" / job_id
    folder.mkdir(parents=True, exist_ok=True)
    resume_run = os.environ.get(RESUME_ENV) or None
    shipper = CheckpointShipper(folder / "checkpoints")
    state, reason, outcome = FAILED, "The worker stopped without a result.", {}
    try:
        if job.action:  # an explanation or a small version reads the parent's files on the studio's machine
            raise JobError("Explanations and small versions run on the studio's own machine, not on Ray (yet).")
        if resume_run:
            _fetch_saved_progress(resume_run, folder / "checkpoints")
        fetched = fetch_dataset(job.spec.data.dataset_id, dataset_run)
        print(
            f"data set {job.spec.data.dataset_id}: "
            f"{'fetched from MLflow' if fetched else 'already on this node'} "
            f"into {settings.studio_home() / 'datasets'}",
            flush=True,
        )
        if os.environ.get(SHIPPED_BASE_MODEL_ENV):  # a base-model folder of the studio's machine
            from studio.modalities.llm.ship import fetch_base_model

            _, said = fetch_base_model(json.loads(os.environ[SHIPPED_BASE_MODEL_ENV]), settings.studio_home())
            print(said, flush=True)
        spec = job.spec
        if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip() and spec.training.device.startswith("cuda:"):
            spec = spec.with_changes(**{"training.device": "cuda:0"})  # Ray's GPU is this process's GPU 0
        state, reason, outcome = worker.train_job(
            job,
            LineLink(job, dataset_run, shipper, resumed=bool(resume_run)),
            flag,
            wrap_hooks=wrap_hooks,
            spec=spec,
            bundle_out=folder / "model.zip",
            checkpoint_dir=folder / "checkpoints",
            log_file="the Ray job's log, below",
            resume_run_id=resume_run,
            run_tags={TAG_DATASET_RUN: dataset_run, TAG_EXECUTOR: "ray", TAG_NODE: socket.gethostname()},
        )
    except Exception as err:  # noqa: BLE001 - the data set or the saved progress could not be fetched
        import traceback

        traceback.print_exc()
        state, reason = FAILED, worker.plain_reason(err, "the Ray job's log, below")
    finally:
        if state in (CANCELLED, INTERRUPTED):
            shipper.stop(send_last=True)  # it can be resumed from its last saved epoch
        else:
            shipper.stop(send_last=False)
            shipper.forget()  # the run is over for good: its saved progress is of no use any more
        _say(
            result=state,
            reason=reason,
            test_metrics=_finite(dict(outcome.get("test_metrics") or {})),
            quality=_finite(dict(outcome.get("quality") or {})),
        )
        import shutil

        shutil.rmtree(folder, ignore_errors=True)  # the bundle is in MLflow; the node keeps no job files
    return 0 if state == SUCCEEDED else 1


def entrypoint_resources(slot: Slot) -> dict[str, int | None]:
    """What the Ray job asks for: one GPU per device of the slot (a job on several devices has several
    slots joined with commas, see :func:`studio.jobs.scheduler.combined_slot`; Ray places its entrypoint
    on one node with that many free GPUs and sets its ``CUDA_VISIBLE_DEVICES``), else one CPU per
    device (the CPU processes of a run on several CPU devices)."""
    count = max(1, len([name for name in slot.name.split(",") if name]))
    return {
        "entrypoint_num_gpus": count if slot.is_gpu else None,
        "entrypoint_num_cpus": None if slot.is_gpu else count,
    }


class CheckpointShipper:
    """Sends the run's latest checkpoint to MLflow (artifacts ``checkpoints/epoch-NNNN.ckpt``, at most every
    ``STUDIO_RAY_CHECKPOINT_SECONDS``, default 30 s) and says so in an ``@studio`` line, so a job whose
    machine is lost or whose worker is killed can resume elsewhere. Only the latest one is kept there."""

    def __init__(self, folder: Path) -> None:
        import threading

        self.folder = folder
        self.every = _float_env(CHECKPOINT_UPLOAD_ENV, DEFAULT_CHECKPOINT_UPLOAD_SECONDS)
        self.run_id: str | None = None
        self.sent: int | None = None
        self._last = -1e9
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: Any = None

    def start(self, run_id: str) -> None:
        import threading

        self.run_id = run_id
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="checkpoint-shipper", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            if time.monotonic() - self._last >= self.every:
                self.send()

    def send(self) -> None:
        from studio import tracking

        checkpoint = latest_checkpoint(self.folder)
        if self.run_id is None or checkpoint is None or (self.sent or 0) >= checkpoint.epoch:
            return
        with self._lock:
            try:
                tracking.client().log_artifact(self.run_id, str(checkpoint.path), CHECKPOINT_ARTIFACT)
            except FileNotFoundError:
                return  # replaced by the next epoch's while being read: the next round sends that one
            except Exception as err:
                print(f"could not send the checkpoint to MLflow: {err}", file=sys.stderr, flush=True)
                return
            previous, self.sent, self._last = self.sent, checkpoint.epoch, time.monotonic()
            _say(checkpoint=checkpoint.epoch)
            if previous:
                self._delete(previous)

    def stop(self, *, send_last: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if send_last:
            self.send()

    def forget(self) -> None:
        """Remove what was sent (the run ended for good)."""
        if self.sent:
            self._delete(self.sent)
            self.sent = None

    def _delete(self, epoch: int) -> None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        from studio import tracking

        name = checkpoint_file(Path("."), epoch).name
        try:
            uri = tracking.client().get_run(self.run_id).info.artifact_uri
            get_artifact_repository(uri).delete_artifacts(f"{CHECKPOINT_ARTIFACT}/{name}")
        except Exception as err:  # only space on the server: the next resume takes the newest anyway
            print(f"could not remove an older checkpoint from MLflow: {err}", file=sys.stderr, flush=True)


def _fetch_saved_progress(run_id: str, folder: Path) -> None:
    """Put the newest checkpoint the run sent to MLflow into ``folder`` (a resumed job on a new node)."""
    from studio import tracking

    mlflow_client = tracking.client()
    names = [Path(f.path).name for f in mlflow_client.list_artifacts(run_id, CHECKPOINT_ARTIFACT)]
    saved = [n for n in names if n.startswith("epoch-") and n.endswith(".ckpt")]
    if not saved:
        raise JobError("The run's saved progress is not on the MLflow server any more, so it cannot resume.")
    folder.mkdir(parents=True, exist_ok=True)
    fetched = mlflow_client.download_artifacts(run_id, f"{CHECKPOINT_ARTIFACT}/{max(saved)}", str(folder))
    Path(fetched).replace(folder / max(saved))
    print(f"resuming from {max(saved)}, fetched from MLflow", flush=True)


def _float_env(name: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(name, "").strip() or default))
    except ValueError:
        return default


def _log_input(run_id: str, dataset_id: str, dataset_run: str) -> None:
    """Record the data set as the run's input (``mlflow.log_input``), pointing at its MLflow copy."""
    try:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        from studio import tracking

        digest = dataset_id.rsplit("-", 1)[-1][:36]
        dataset = Dataset(
            name=dataset_id,
            digest=digest,
            source_type="mlflow_run",
            source=json.dumps({"run_id": dataset_run, "artifact_path": DATASET_ARTIFACT}),
        )
        inputs = [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])]
        try:
            tracking.client().log_inputs(run_id, datasets=inputs)
        except Exception:  # two runs recording a new data set at once: MLflow's store refuses one; again
            time.sleep(0.5)
            tracking.client().log_inputs(run_id, datasets=inputs)
    except Exception as err:  # only a record for the MLflow UI: training goes on
        print(f"could not record the data set as the run's input: {err}", file=sys.stderr, flush=True)
