"""Adding a CSV data set against a bare ``pandas.read_csv`` of the same file.

Generates a table (default 1,000,000 rows × 50 columns: floats with some missing cells, whole numbers and
a few text columns, the mix of a real export), writes it as CSV, then runs, each in a fresh process:

- the baseline: ``python -c "import pandas; pandas.read_csv(FILE)"``;
- the studio: ``python -m studio datasets add FILE`` into a temporary studio folder (reading, checking,
  converting, profiling and storing the data set: everything a user waits for).

Prints the wall time and peak memory (RSS) of each and the ratio studio / pandas (goal ≤ 1.5×, peak
under 2 GB). The CSV is kept in the temporary folder between runs with ``--keep`` (it takes a while to
write).

    python bench/csv_ingest.py [--rows 1000000] [--columns 50] [--repeats 1] [--keep]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Runs the given Python code, then prints the peak resident memory of this process in bytes.
PEAK = "import resource, sys; print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"


def write_table(path: Path, rows: int, columns: int, seed: int = 0) -> None:
    """A CSV like a real export: floats (about 2% missing), whole numbers and short text columns."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_text, n_int = 2, 3
    n_float = max(1, columns - n_text - n_int - 1)
    chunk = 100_000
    with path.open("w", encoding="utf-8", newline="") as out:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            frame = pd.DataFrame(
                rng.normal(size=(n, n_float)).round(4), columns=[f"x{i}" for i in range(n_float)]
            )
            frame = frame.mask(rng.random(size=frame.shape) < 0.02)
            for i in range(n_int):
                frame[f"count{i}"] = rng.integers(0, 1000, size=n)
            for i in range(n_text):
                frame[f"group{i}"] = rng.choice(["red", "green", "blue", "yellow", "black"], size=n)
            frame["label"] = np.where(frame["x0"].fillna(0) + 0.5 * rng.normal(size=n) > 0, "yes", "no")
            frame.to_csv(out, index=False, header=start == 0)


def timed(code: str, env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS bytes of ``python -c code`` (a fresh interpreter, imports included)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{PEAK}"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {code}\n{done.stdout}\n{done.stderr}")
    peak = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("PEAK "))
    return seconds, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the generated CSV")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a tiny size that runs in seconds (what the tests run, so the benchmark never rots)",
    )
    args = parser.parse_args()
    if args.tiny:
        args.rows, args.columns, args.repeats = 2000, 6, 1

    folder = Path(tempfile.gettempdir()) / "studio-bench-csv"
    folder.mkdir(exist_ok=True)
    csv_path = folder / f"table-{args.rows}x{args.columns}.csv"
    if not csv_path.exists():
        started = time.perf_counter()
        write_table(csv_path, args.rows, args.columns)
        print(f"wrote {csv_path} in {time.perf_counter() - started:.0f} s")
    size_mb = csv_path.stat().st_size / 1e6
    print(f"table: {args.rows:,} rows × {args.columns} columns, {size_mb:,.0f} MB")

    pandas_runs, studio_runs = [], []
    for _ in range(args.repeats):
        pandas_runs.append(timed(f"import pandas; pandas.read_csv({str(csv_path)!r})", dict(os.environ)))
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "STUDIO_HOME": home, "PYTHONPATH": str(REPO)}
            code = (
                "from studio.cli import main\n"
                f"code = main(['datasets', 'add', {str(csv_path)!r}])\n"
                "assert code == 0, code"
            )
            studio_runs.append(timed(code, env))

    best_pandas, best_studio = min(pandas_runs), min(studio_runs)
    print(f"pandas.read_csv      {best_pandas[0]:7.1f} s   peak {best_pandas[1] / 1e9:5.2f} GB")
    print(f"studio datasets add  {best_studio[0]:7.1f} s   peak {best_studio[1] / 1e9:5.2f} GB")
    print(f"ratio studio / pandas: {best_studio[0] / best_pandas[0]:.2f}× (goal ≤ 1.5×, peak < 2 GB)")
    if not args.keep:
        csv_path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
