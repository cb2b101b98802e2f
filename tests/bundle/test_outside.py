"""The outside runs (tests/bundle/outside.py): each script in a process of its own, forked from one that
has imported mlflow, pandas and torch, where the studio cannot be imported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.bundle.outside import BLOCKER, run_outside


def test_each_script_runs_alone_without_the_studio_in_its_own_folder_and_environment(tmp_path: Path) -> None:
    script = BLOCKER + (
        "import json, os, sys\n"
        "left = 'wave' in sys.modules  # a module nothing imports but the first script\n"
        "import wave\n"
        "try:\n    import studio\nexcept ImportError:\n    pass\n"
        "json.dump({'cwd': os.getcwd(), 'pid': os.getpid(), 'attempts': attempts, 'seen': os.environ.get('SEEN'),\n"
        "           'pythonpath': os.environ.get('PYTHONPATH'), 'wave_left': left}, open('out.json', 'w'))\n"
        "print('done')\n"
    )
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    assert run_outside(first, script, env={"SEEN": "1"}) == "done\n"
    run_outside(second, script)
    one = json.loads((first / "out.json").read_text())
    two = json.loads((second / "out.json").read_text())
    assert one["cwd"] == str(first.resolve()) and two["cwd"] == str(second.resolve())
    assert one["attempts"] == ["studio"] and one["pythonpath"] is None
    assert one["seen"] == "1" and two["seen"] is None  # an environment of its own
    assert one["pid"] != two["pid"] != os.getpid()
    assert not two["wave_left"]  # nothing the first script imported is there for the second


def test_a_failing_script_fails_the_test_with_its_error(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        run_outside(tmp_path, "print('before')\n1 / 0\n")
    with pytest.raises(AssertionError, match="ran past 1 s"):
        run_outside(tmp_path, "import time\ntime.sleep(30)\n", timeout=1)
    assert run_outside(tmp_path, "print('the server goes on')\n") == "the server goes on\n"


def test_a_fork_server_stopped_by_another_test_is_replaced(tmp_path: Path, monkeypatch) -> None:
    from tests.bundle import outside
    from tests.forkserver import ForkServer, stop

    # a server that imports nothing ahead (the replacing is what is checked, not the preloading), and
    # this process's own server left as it is for the tests after this one
    light = ForkServer("", cwd=outside.SERVER.cwd, env=outside.SERVER.env)
    monkeypatch.setattr(outside, "SERVER", light)
    run_outside(tmp_path, "print(1)\n")
    server = light.proc
    server.kill()  # as a test that stops every child of its process does
    server.wait()
    assert run_outside(tmp_path, "print(2)\n") == "2\n"
    replaced = light.proc
    assert replaced is not server and replaced.poll() is None
    stop(replaced)
