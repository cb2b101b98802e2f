"""Every benchmark under bench/ runs at its tiny size (``--tiny``), so none rots between the times someone
measures with it. Each runs in this process (the heavy imports are paid once) with its own temporary
studio folder; the numbers are not checked, only that each runs to its end and prints its result line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.mlflow_store import new_store

pytestmark = pytest.mark.bench

BENCH = Path(__file__).resolve().parents[1] / "bench"
RESULT_LINES = {  # what each benchmark prints last: its comparison
    "compress": "compression: ",
    "csv_ingest": "ratio studio / pandas:",
    "fold_ensemble": "ensemble - single (mean):",
    "explain": "permutation importance,",
    "image_throughput": "ratio studio / baseline:",
    "llm_throughput": "ratio studio / bare:",
    "search_quality": "wine ",
    "search_references": "wine (goal",
    "tabular_throughput": "ratio studio/bare :",
    "text_throughput": "peak memory of this process",
    "text_bow_throughput": "whole train() call:",
    "text_quality": "diff: the studio against the better TF-IDF+LR",
    "quality": "goal ",
    "quality_screen": "diabetes: mean ",
}
RUN_ON_THEIR_OWN = {"footprint": "test_footprint_runs_tiny: it starts serve, in a process of its own"}
ARTIFACTS = BENCH.parent / "test-artifacts"


def test_every_benchmark_is_covered() -> None:
    assert sorted(path.stem for path in BENCH.glob("*.py")) == sorted([*RESULT_LINES, *RUN_ON_THEIR_OWN])


@pytest.mark.python_m_workers  # it counts serve's processes as a user's serve starts them, not forks
def test_footprint_runs_tiny(tmp_path: Path) -> None:
    """``bench/footprint.py --tiny``: serve idle, during a 2-epoch run and after it, then stopped; it fails
    on a zombie, MLflow's job runner, a process left after the stop, a stop over 10 s or idle over
    1500 MB. Its report goes to ``test-artifacts/footprint.txt`` (what ``make test`` showed before it
    ran here, beside the other tests)."""
    import os
    import subprocess

    from tests.ports import free_port

    done = subprocess.run(
        [sys.executable, str(BENCH / "footprint.py"), "--tiny", "--port", str(free_port()),
         "--mlflow-port", str(free_port())],
        cwd=tmp_path,
        env=dict(os.environ, TMPDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "footprint.txt").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "stopped (SIGTERM) in" in done.stdout


@pytest.mark.parametrize("name", sorted(RESULT_LINES))
def test_benchmark_runs_tiny(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    if name == "search_references":
        pytest.importorskip("sklearn")
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp_path}/mlruns"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--tiny"])
    if name == "search_quality":
        monkeypatch.setattr(sys, "argv", [f"{name}.py", "--tiny", "--home", str(tmp_path / "home")])
    code = module.main()
    out = capsys.readouterr().out
    assert code in (None, 0)
    assert any(line.startswith(RESULT_LINES[name]) for line in out.splitlines()), out
