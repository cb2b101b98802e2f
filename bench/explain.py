"""How long explanations take on a table: permutation importance on a 1,000-row test split (goal: under
30 s on a 2-core machine) and integrated gradients for one row, each through the same code the job runs
(:func:`studio.engine.analysis.run_analysis`: the data set prepared, the bundle opened, the work done,
the result logged to MLflow). The table has 6 numeric and 3 category columns; a small MLP is trained
first (2 epochs: only the explaining is timed).

    python bench/explain.py [--rows 5000] [--repeats 5] [--tiny]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_table(rows: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 6)).round(4), columns=[f"number_{i}" for i in range(6)])
    for i, choices in enumerate((["a", "b", "c"], ["north", "south"], ["x", "y", "z", "w"])):
        frame[f"category_{i}"] = rng.choice(choices, size=rows)
    score = 2 * frame["number_0"] - frame["number_1"] + (frame["category_0"] == "a") + rng.normal(size=rows)
    frame["label"] = np.where(score > 0, "yes", "no")
    return frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows in the table (a fifth are test rows)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="500 rows, 2 repeats (CI)")
    args = parser.parse_args()
    rows, repeats = (500, 2) if args.tiny else (args.rows, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("STUDIO_HOME", str(Path(tmp) / "home"))
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
        from studio.core.spec import RunSpec
        from studio.data import add_csv
        from studio.engine.analysis import run_analysis
        from studio.engine.training import train

        csv = Path(tmp) / "table.csv"
        make_table(rows).to_csv(csv, index=False)
        dataset = add_csv(csv, name="explain bench")
        spec = RunSpec.from_dict(
            {
                "task": "classification",
                "data": {"dataset_id": dataset.id, "target": "label", "test_fraction": 0.2},
                "training": {"epochs": 2, "batch_size": 128, "device": "cpu"},
            }
        )
        result = train(spec, bundle_out=Path(tmp) / "model.zip", progress_bar=False)
        timings = {}
        for action, options in (("explain", {"repeats": repeats}), ("explain_row", {"row": {"number_0": 1.0}})):
            started = time.perf_counter()
            sentence = run_analysis(
                action, spec, bundle=result.bundle_path, run_id=result.run_id, options=options,
                out_folder=Path(tmp) / action, progress=lambda fraction: None,
            )
            timings[action] = time.perf_counter() - started
            print(f"{action}: {timings[action]:.1f} s: {sentence}")
        test_rows = round(rows * 0.2)
        print(
            f"permutation importance, {test_rows:,} test rows x 9 columns x {repeats} repeats: "
            f"{timings['explain']:.1f} s (goal < 30 s); one row's integrated gradients: {timings['explain_row']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
