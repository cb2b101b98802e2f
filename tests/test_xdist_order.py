"""The order in which ``--dist loadfile`` hands out the test files (``tests/xdist_order.py``)."""

from __future__ import annotations

import pytest

pytest.importorskip("xdist")

from tests.xdist_order import UNKNOWN_SECONDS, known_seconds, longest_first, unit_of  # noqa: E402


def test_the_longest_files_go_first_and_each_file_keeps_its_own_order() -> None:
    ids = ["a.py::t1", "a.py::t2", "b.py::t1", "c.py::t1", "c.py::t2", "d.py::t1"]
    seconds = {"a.py": 1.0, "b.py": 30.0, "c.py": 10.0}  # d.py is new: UNKNOWN_SECONDS (5)
    assert longest_first(ids, seconds) == [
        "b.py::t1",
        "c.py::t1",
        "c.py::t2",
        "d.py::t1",
        "a.py::t1",
        "a.py::t2",
    ]
    assert UNKNOWN_SECONDS == 5.0


def test_the_files_that_share_the_ray_head_are_one_unit_counted_together() -> None:
    ray = ["tests/cluster/test_ray_text.py::t", "tests/cluster/test_ray_llm.py::t"]
    assert {unit_of(n) for n in ray} == {"tests/cluster/test_ray_*.py"}
    assert unit_of("tests/cluster/test_deploy.py::t") == "tests/cluster/test_deploy.py"
    seconds = {"tests/cluster/test_ray_text.py": 40.0, "tests/cluster/test_ray_llm.py": 40.0, "x.py": 60.0}
    ordered = longest_first(["x.py::t", *ray], seconds)
    assert ordered == [*ray, "x.py::t"]  # 80 s together, ahead of the 60 s file


def test_the_stored_seconds_name_test_files_that_exist() -> None:
    from pathlib import Path

    seconds = known_seconds()
    assert len(seconds) > 100
    root = Path(__file__).resolve().parents[1]
    missing = [path for path in seconds if not (root / path).is_file()]
    assert len(missing) <= len(seconds) // 10, f"tests/file_seconds.json is stale: {missing[:5]}"
