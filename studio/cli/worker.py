"""``python -m studio.cli.worker JOB_ID`` (``--standby``: a warm worker that reads job ids on stdin;
``--ray JOB_ID``: the Ray executor's entrypoint on a node): the process that trains jobs.

It is put together here, above both of its parts, so that neither imports the other: the job worker
(:mod:`studio.jobs.worker`: the job's row, cancel and SIGTERM, how the job ended) and the search's trial
hooks (:func:`studio.search.pruning.job_hooks`: a trial reports its score to its study each epoch and
stops when the search prunes it). A local job and a Ray job run the same worker with the same hooks.
"""

from __future__ import annotations

import logging
import sys

from studio.jobs import worker
from studio.search.pruning import job_hooks


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["--ray"] and len(args) == 2:  # on a Ray node: the job comes in the environment
        from studio.core import settings
        from studio.jobs.executors.ray import run_remote

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        settings.keep_mlflow_offline()
        return run_remote(args[1], job_hooks)
    return worker.main(args, wrap_hooks=job_hooks)


if __name__ == "__main__":
    raise SystemExit(main())
