"""Image training throughput: the studio's path against a plain torchvision pipeline, in one process.

Both train the same network (built by the studio's registry, same seed, same optimiser, batch size,
image size and augmentation: random resized crop, rotation, horizontal flip, colour jitter) for the
same number of epochs on the same photos, with a validation pass after every epoch.

- studio: ``studio.engine.training.train`` (DataModule with the uint8 cache, augmentation on batches on the
  training device, Lightning, callbacks, MLflow logging to a temporary store, or to
  ``MLFLOW_TRACKING_URI`` when set). The cache is built once before (its time is reported separately:
  every later run and epoch reuses it).
- baseline: ``torchvision.datasets.ImageFolder`` + ``DataLoader`` (worker processes) with per-picture
  ``torchvision.transforms.v2`` (decode, resize + centre crop, the same augmentation, normalise) and a
  hand-written training loop; in the default NCHW memory layout on a CPU (the studio uses channels-last
  everywhere; ``--baseline-channels-last`` gives the baseline that too).

Prints training pictures per second of each (epochs × training pictures / fitting time) and the ratio
(goal ≥ 2 on a CPU), and the CPU time each spends per picture (the baseline's DataLoader workers
included): on a machine shared with other work, wall-clock rates swing with the load, and a pipeline
of three processes gets a bigger share of a busy CPU than one process does; CPU time per picture
measures the work each path does.

    python bench/image_throughput.py [--images 1500] [--photo-size 400x300] [--size 64] [--arch small_cnn]
                                     [--epochs 2] [--batch-size 64] [--workers N] [--device cpu]

On a GPU: ``--arch resnet18 --size 224 --device cuda`` (bfloat16 mixed precision, channels-last;
resnet18 from scratch, as no weights can be downloaded).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLASSES = ("circles", "squares", "stripes", "dots", "plain")


def make_photos(folder: Path, n: int, width: int, height: int, seed: int = 0) -> None:
    """``n`` JPEG photos in class folders: noisy backgrounds with a shape per class."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for i in range(n):
        kind = CLASSES[i % len(CLASSES)]
        base = rng.integers(40, 200, 3)
        pixels = np.clip(base + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        side = int(rng.integers(min(width, height) // 4, min(width, height) // 2))
        x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        if kind == "circles":
            draw.ellipse((x, y, x + side, y + side), fill=colour)
        elif kind == "squares":
            draw.rectangle((x, y, x + side, y + side), fill=colour)
        elif kind == "stripes":
            for row in range(0, height, 16):
                draw.rectangle((0, row, width, row + 6), fill=colour)
        elif kind == "dots":
            for _ in range(30):
                cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
                draw.ellipse((cx - 5, cy - 5, cx + 5, cy + 5), fill=colour)
        target = folder / kind / f"{i:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, quality=90)


def zip_folder(folder: Path, path: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for file in sorted(folder.rglob("*.jpg")):
            zf.write(file, f"photos/{file.relative_to(folder)}")
    return path


def cpu_seconds(children: bool = False) -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def baseline(
    folder: Path, spec, n_classes: int, image_size: int, workers: int, device: str, channels_last: bool
) -> tuple[float, int]:
    """A plain torchvision pipeline: ImageFolder + DataLoader + per-picture v2 transforms; returns
    (fitting seconds, training pictures per epoch). Its workers have exited when it returns."""
    import numpy as np
    import torch
    from torch.nn import functional as F
    from torchvision import datasets
    from torchvision.transforms import v2

    from lightning_modules.registry import ImageShape, build_network
    from lightning_modules.tabular.data import stratified_split
    from studio.core.spec import ARCHITECTURES, IMAGENET_MEAN, IMAGENET_STD

    image = spec.image
    jitter = image.color_jitter
    normalise = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)  # the cost is the same whatever the values
    prepare = [v2.ToImage(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    augment = [
        v2.RandomResizedCrop(image_size, scale=(image.crop_scale, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomRotation(image.rotation_degrees),
        v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter),
    ]
    to_float = [v2.ToDtype(torch.float32, scale=True), normalise]
    train_set = datasets.ImageFolder(str(folder), transform=v2.Compose(prepare + augment + to_float))
    val_set = datasets.ImageFolder(str(folder), transform=v2.Compose(prepare + to_float))
    labels = np.array(train_set.targets)
    train_idx, val_idx, _ = stratified_split(
        labels, len(labels), spec.data.val_fraction, spec.data.test_fraction, 0
    )
    loader_options = {
        "batch_size": spec.training.batch_size or 64,
        "num_workers": workers,
        "persistent_workers": workers > 0,
    }
    if device == "cuda":
        loader_options["pin_memory"] = True
    train_loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(train_set, train_idx), shuffle=True, drop_last=False, **loader_options
    )
    val_loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(val_set, val_idx), shuffle=False, **loader_options
    )
    torch.manual_seed(spec.data.seed)
    arch = spec.architecture
    net = build_network(arch.name, arch.params, ImageShape(n_classes)).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    assert not ARCHITECTURES[arch.name].pretrained_weights or not arch.params.get("pretrained")
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=spec.optimizer.learning_rate, weight_decay=spec.optimizer.weight_decay
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    started = time.perf_counter()
    for _ in range(spec.training.epochs):
        net.train()
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss = F.cross_entropy(net(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad(), autocast:
            for x, _labels in val_loader:
                net(x.to(device)).float().softmax(-1)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    del train_loader, val_loader  # stops the persistent workers, so that their CPU time is counted
    return seconds, len(train_idx)


def fit_cpu_time():
    """Training hooks that measure the CPU time of fitting (from the run's start to the last epoch's end).
    They subclass the engine's ``TrainHooks``, so a hook the engine adds later has its default here too."""
    from studio.engine.training import TrainHooks

    class FitCpuTime(TrainHooks):
        def __init__(self) -> None:
            self.started = 0.0
            self.seconds = 0.0

        def on_run_started(self, run_id: str, experiment_id: str) -> None:
            self.started = cpu_seconds()

        def on_progress(self, progress) -> None:
            self.seconds = cpu_seconds() - self.started

    return FitCpuTime()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--photo-size", default="400x300", help="width x height of the generated photos")
    parser.add_argument("--size", type=int, default=64, help="training image size (px)")
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="baseline DataLoader workers"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--baseline-channels-last",
        action="store_true",
        help="give the baseline the studio's channels-last memory too (isolates the data pipeline's effect)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a tiny size that runs in seconds (what the tests run, so the benchmark never rots)",
    )
    args = parser.parse_args()
    if args.tiny:
        args.images, args.photo_size, args.size, args.epochs, args.batch_size, args.workers = (
            50,
            "48x40",
            16,
            1,
            8,
            0,
        )
    width, height = (int(v) for v in args.photo_size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="studio-image-bench-") as tmp:
        root = Path(tmp)
        os.environ["STUDIO_HOME"] = str(root / "home")
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlruns/mlflow.db")
        started = time.perf_counter()
        photos = root / "photos"
        make_photos(photos, args.images, width, height)
        print(f"made {args.images} photos of {width}×{height} px in {time.perf_counter() - started:.1f} s")

        import torch

        from lightning_modules.image.data import build_cache, cache_path
        from studio.core.spec import RunSpec
        from studio.data import add_image_zip, image_paths, load_profile
        from studio.engine.training import train

        torch.set_float32_matmul_precision("high")
        started = time.perf_counter()
        info = add_image_zip(zip_folder(photos, root / "photos.zip"))
        print(f"ingest (check, decode, store): {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        build_cache(list(image_paths(info.id)["path"]), args.size, cache_path(info.path, args.size))
        print(f"uint8 cache at {args.size} px, built once: {time.perf_counter() - started:.1f} s")

        params = {"pretrained": False} if args.arch != "small_cnn" else {}
        spec = RunSpec.from_dict(
            {
                "task": "image_classification",
                "data": {"dataset_id": info.id},
                "architecture": {"name": args.arch, "params": params},
                "image": {"size": args.size},
                "training": {
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "device": args.device,
                    "precision": "bf16-mixed" if args.device == "cuda" else "32",
                },
                "early_stopping": {"enabled": False},
                "scheduler": {"name": "none"},
            }
        )
        hooks = fit_cpu_time()
        result = train(spec, hooks=hooks)
        studio_rate = result.train_rows * args.epochs / result.fit_seconds
        n_classes = load_profile(info.id)["n_classes"]
        cpu_before, children_before = cpu_seconds(), cpu_seconds(children=True)
        seconds, train_pictures = baseline(
            photos,
            spec,
            n_classes,
            args.size,
            args.workers,
            args.device,
            args.baseline_channels_last or args.device == "cuda",
        )
        gc.collect()
        base_cpu = cpu_seconds() - cpu_before + cpu_seconds(children=True) - children_before
        base_rate = train_pictures * args.epochs / seconds
        pictures = train_pictures * args.epochs
        print(
            f"device {args.device}, {args.arch} at {args.size} px, batch {args.batch_size}, {args.epochs} epochs, "
            f"{train_pictures} training pictures, baseline workers {args.workers}, baseline channels-last "
            f"{args.baseline_channels_last or args.device == 'cuda'}"
        )
        print(
            f"studio (cached uint8, batch augmentation): {studio_rate:8.1f} pictures/s  ({result.fit_seconds:.1f} s)"
        )
        print(f"ImageFolder + DataLoader + v2 transforms:  {base_rate:8.1f} pictures/s  ({seconds:.1f} s)")
        print(f"ratio studio / baseline: {studio_rate / base_rate:.2f} (goal ≥ 2 on a CPU)")
        print(
            f"CPU time per training picture: studio {hooks.seconds / pictures * 1000:.1f} ms, baseline "
            f"{base_cpu / pictures * 1000:.1f} ms (ratio {base_cpu / max(hooks.seconds, 1e-9):.2f})"
        )


if __name__ == "__main__":
    main()
