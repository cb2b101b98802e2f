"""How ``pytest -n N --dist loadfile`` hands out the test files: the longest first, and the Ray files together.

pytest-xdist's own order for ``loadfile`` is by number of tests, most first, so a file with one long test
(a search killed and resumed, a browser run) starts last, while the other processes have nothing left to
do. Here the files go out by the seconds they took last time (``tests/file_seconds.json``, most first;
a file not in it counts as :data:`UNKNOWN_SECONDS`), which is the classic longest-first rule for filling
processes evenly. The files that share the session's Ray head (``tests/cluster/test_ray_*.py``) go to one
process as one unit, so only one head starts, and their tests run one after another as they do alone.

Refresh the seconds after adding or changing long tests (a quiet machine, the whole selection)::

    python -m pytest -n auto --dist loadfile --store-file-seconds -m "not slow and not gpu"

The order only changes when a file starts, never what runs or what it checks."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from xdist.scheduler import LoadScopeScheduling

SECONDS_FILE = Path(__file__).with_name("file_seconds.json")
UNKNOWN_SECONDS = 5.0  # a new file: about what a file of a few page tests takes
RAY_FILES = "tests/cluster/test_ray_"
RAY_UNIT = "tests/cluster/test_ray_*.py"


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def unit_of(nodeid: str) -> str:
    """The files one process runs together: a file, or every file that uses the session's Ray head."""
    path = file_of(nodeid)
    return RAY_UNIT if path.startswith(RAY_FILES) else path


def known_seconds() -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(SECONDS_FILE.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def longest_first(nodeids: list[str], seconds: dict[str, float]) -> list[str]:
    """``nodeids`` with their units in order of the seconds they take, most first (a stable sort: the
    tests of one file keep their own order)."""
    cost: dict[str, float] = defaultdict(float)
    for path in {file_of(n) for n in nodeids}:
        cost[unit_of(path)] += seconds.get(path, UNKNOWN_SECONDS)
    return sorted(nodeids, key=lambda n: -cost[unit_of(n)])


class LongestFilesFirst(LoadScopeScheduling):
    """``--dist loadfile`` with its units in :func:`longest_first` order."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False  # keep the order made below, not "most tests first"

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)

    def schedule(self) -> None:
        collections = list(self.registered_collections.values())
        if self.collection is None and collections and all(c == collections[0] for c in collections[1:]):
            # the units in the order wanted, as keys: the base class then fills each in (an OrderedDict keeps
            # a key where it was first put); every process still runs a unit by its own index of each test
            for nodeid in longest_first(list(collections[0]), known_seconds()):
                self.workqueue.setdefault(unit_of(nodeid), {})
        super().schedule()
