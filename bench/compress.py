"""A small version of a small CNN on generated pictures (and of an MLP on a table): the studio's
compress job (:func:`studio.engine.analysis.run_analysis`, ``compress``) quantises the bundle's ONNX
network to int8 with ONNX Runtime (once as it is, once after zeroing half its weights by magnitude) and
measures both on the test split. Prints the size ratio (ONNX file, and the bundle zips), the CPU latency
ratio (one picture / row at a time, one core, original and small taking turns) and the score delta.
Goal for the CNN: at least 3x smaller and 1.5x faster at no more than 1 point of accuracy lost.

    python bench/compress.py [--pictures 150] [--epochs 8] [--tiny]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def picture_zip(path: Path, per_class: int, size: int = 48, seed: int = 0) -> Path:
    """Three classes on noisy grey: a red square, a blue square, stripes (positions and sizes vary)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as zf:
        for kind in ("red", "blue", "stripes"):
            for i in range(per_class):
                pixels = rng.normal(128, 20, (size, size, 3))
                if kind == "stripes":
                    rows = ((np.arange(size) + rng.integers(0, 4)) // 3) % 2 == 0
                    pixels[rows] = rng.normal(220, 10)
                else:
                    side = int(rng.integers(size // 4, size // 2))
                    x, y = rng.integers(0, size - side, 2)
                    pixels[y : y + side, x : x + side] = [220, 40, 40] if kind == "red" else [40, 60, 220]
                out = io.BytesIO()
                Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(out, format="PNG")
                zf.writestr(f"{kind}/{i:03d}.png", out.getvalue())
    return path


def table_csv(path: Path, rows: int, seed: int = 0) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 8)).round(4), columns=[f"x{i}" for i in range(8)])
    frame["label"] = np.where(frame["x0"] - frame["x1"] + 0.3 * rng.normal(size=rows) > 0, "yes", "no")
    frame.to_csv(path, index=False)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=150, help="pictures per class")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--tiny", action="store_true", help="20 pictures per class, 1 epoch (CI)")
    args = parser.parse_args()
    per_class, epochs = (20, 1) if args.tiny else (args.pictures, args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("STUDIO_HOME", str(Path(tmp) / "home"))
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
        import json

        from studio.core.spec import RunSpec
        from studio.data import add_csv, add_image_zip
        from studio.engine.analysis import run_analysis
        from studio.engine.training import train

        cases = {
            "small CNN": (
                add_image_zip(picture_zip(Path(tmp) / "pictures.zip", per_class)),
                {"task": "image_classification", "image": {"size": 48}},
            ),
            "MLP": (
                add_csv(table_csv(Path(tmp) / "table.csv", 50 * per_class), name="table"),
                {"task": "classification", "data": {"target": "label"}},
            ),
        }
        lines = []
        for name, (dataset, settings) in cases.items():
            spec = RunSpec.from_dict(
                {
                    **settings,
                    "data": {"dataset_id": dataset.id, **settings.get("data", {})},
                    "training": {"epochs": epochs, "batch_size": 32, "device": "cpu"},
                    "early_stopping": {"enabled": False},
                }
            )
            result = train(spec, bundle_out=Path(tmp) / name / "model.zip", progress_bar=False)
            for label, options in ((name, {}), (f"{name} pruned 50%", {"prune": 0.5})):
                out = Path(tmp) / label / "small"
                try:
                    sentence = run_analysis(
                        "compress", spec, bundle=result.bundle_path, run_id=result.run_id,
                        options={"tolerance": 1.0, **options}, out_folder=out, progress=lambda f: None,
                    )
                except Exception as err:  # noqa: BLE001 - a benchmark reports what happened
                    sentence = f"failed: {err}"
                found = json.loads((out / "result.json").read_text())
                print(f"{label}: {sentence}")
                bundles = (
                    f", bundle zip {result.bundle_path.stat().st_size / 1e3:.0f} kB -> "
                    f"{(out / found['bundle']).stat().st_size / 1e3:.0f} kB"
                    if found.get("bundle") else ""
                )
                lines.append(
                    f"{label}: size ratio {found['size_ratio']:.2f}x "
                    f"({found['original']['size_bytes'] / 1e3:.0f} kB -> {found['small']['size_bytes'] / 1e3:.0f} kB"
                    f"{bundles}), latency ratio {found['speedup']:.2f}x "
                    f"({found['original']['seconds_per_item'] * 1e3:.3f} -> "
                    f"{found['small']['seconds_per_item'] * 1e3:.3f} ms per {found['unit']}), "
                    f"score delta {-found['score_loss']:+.4f} {found['metric']} "
                    f"on {found['test_items']} test {found['unit']}s"
                )
        for line in lines:
            print(line)
        print("compression: " + " | ".join(lines) + " (goal for the CNN: >= 3x smaller, >= 1.5x faster, <= 0.01 lost)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
