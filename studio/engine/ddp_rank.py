"""A follower rank of a run on several devices: ``python -m studio.engine.ddp_rank PAYLOAD.json``.

Started by rank 0 (:mod:`studio.engine.ddp`), never by hand. It builds the same data, model and loop as
rank 0 from the payload (the spec of this attempt, its gradient accumulation, the checkpoint it resumes
from) and runs :func:`studio.engine.training._run_lightning` with no MLflow run and default hooks: it
logs, reports and writes nothing, and exits when the run's last step is done. Rank 0 decides when to
stop, so SIGTERM and SIGINT (sent to the whole process group by a cancel or Ctrl-C) are ignored here,
and the process dies with rank 0 (Linux)."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any


def _die_with_parent() -> None:
    """Linux: this process is killed when rank 0 dies (it must not wait for a leader that is gone)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def follow(payload: dict[str, Any]) -> int:
    """Run one follower rank: the same data, model and loop as rank 0, nothing tracked or written."""
    import pytorch_lightning  # noqa: F401  (configures its loggers on import; quieten them after)

    from studio.core.spec import RunSpec
    from studio.data import get_dataset, load_profile
    from studio.engine import training

    rank, port = int(payload["rank"]), int(payload["port"])
    spec = RunSpec.from_json(payload["spec"])
    plan = training.DevicePlan(**payload["plan"])
    dataset = get_dataset(spec.data.dataset_id)
    profile = load_profile(dataset.id)
    training._quiet_lightning()
    training._cheap_cuda_checks()
    prepared = training._prepare(spec, dataset, profile, plan)
    with tempfile.TemporaryDirectory(prefix=f"studio-rank{rank}-") as scratch:
        session = training._Session(folder=Path(scratch), resumable=False, asked=spec)
        session.accumulate = int(payload.get("accumulate", 1))
        resume = payload.get("resume_from")
        session.resume_from = Path(resume) if resume else None
        module = prepared.trainee.lightning_module(
            spec, session.optimizer_steps_per_epoch(prepared.data.steps_per_epoch), session.accumulate
        )
        hooks = training.TrainHooks()
        hooks.runs_test = bool(payload.get("runs_test", True))
        training._run_lightning(
            spec, prepared.data, module, prepared.plan, None, hooks, False, session, rank=rank, port=port
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(
            "usage: python -m studio.engine.ddp_rank PAYLOAD.json (started by a training run)",
            file=sys.stderr,
        )
        return 2
    # Rank 0 decides when to stop (a cancel, Ctrl-C, a job's SIGTERM reach the whole process group).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    payload = json.loads(Path(args[0]).read_text())
    try:
        return follow(payload)
    except Exception as err:  # noqa: BLE001 - rank 0 reports the run's outcome; this is for the log
        print(f"training process {payload.get('rank')}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
