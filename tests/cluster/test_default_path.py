"""Without Ray installed the studio works as before: the default executor never imports ray, choosing the
``ray`` executor says in one plain sentence what is missing, and no test outside tests/cluster imports
ray. (Not marked ``ray``: these run in ``make test``, where Ray need not be installed.)"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# ray made unimportable, as on a machine where requirements-cluster.txt was never installed.
WITHOUT_RAY = """
import sys
sys.modules["ray"] = None
from studio.jobs.executors import make_executor
from studio.jobs.scheduler import Scheduler

scheduler = Scheduler(cpu_slots=1, keep_warm=False)
assert scheduler.executor.name == "local" and [s.name for s in scheduler.slots] == ["cpu:0"]
for address in ("", "http://127.0.0.1:1"):
    import os
    os.environ["RAY_ADDRESS"] = address
    executor = make_executor("ray")  # a scheduler that cannot reach Ray fails each job with the reason
    print(executor.problem)
    assert [s.name for s in executor.slots()] == ["cuda:0", "cpu:0"]
assert sys.modules["ray"] is None, "something imported ray"
"""


def test_the_default_executor_works_without_ray_and_the_ray_one_says_what_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("STUDIO_EXECUTOR", "RAY_ADDRESS")}
    env.update(PYTHONPATH=str(REPO), STUDIO_HOME=str(tmp_path / "home"), CUDA_VISIBLE_DEVICES="")
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_RAY], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "STUDIO_EXECUTOR=ray needs RAY_ADDRESS, the Ray cluster's dashboard address (e.g. http://ray-head:8265).",
        "STUDIO_EXECUTOR=ray needs Ray: install it with `pip install -r requirements-cluster.txt`.",
    ]


def test_no_test_outside_the_cluster_folder_imports_ray() -> None:
    offenders = []
    for path in (REPO / "tests").rglob("*.py"):
        if path.is_relative_to(REPO / "tests" / "cluster"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(name == "ray" or name.startswith("ray.") for name in names):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
