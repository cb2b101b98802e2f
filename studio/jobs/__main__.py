"""``python -m studio.jobs``: the scheduler daemon (``ensure_scheduler()`` starts it this way)."""

from studio.jobs.scheduler import main

raise SystemExit(main())
