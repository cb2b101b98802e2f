"""The image DataModule: decode and resize every picture once into a uint8 cache, then serve batches
from memory and vary them (augmentation) on the training device.

The cache is ``<data set folder>/cache/rgb-<size>px-v<n>.npy``: ``uint8 [pictures, 3, size, size]`` in
the order of the data set's index, prepared by ``studio.core.image_io.load_square`` (the function model
bundles use at prediction time). It is built once per image size, in parallel threads, and written
atomically; later runs and every epoch read it back (memory-mapped) without decoding a file again.
Batches are gathered from it as uint8 (4× less to move than float), moved to the device, then
scaled, augmented and normalised there in :meth:`ImageDataModule.on_after_batch_transfer`.

Several processes training one run (DDP, ``world_size`` > 1) each take their share of every batch
(:class:`ImageBatches`). Rank 0 prepares its DataModule, cache included, before it starts the other
processes, which then find the cache complete (and the atomic write keeps even a race harmless).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from lightning_modules.tabular.data import sharded_steps, stratified_split
from studio.core.augment import GRAY_WEIGHTS, sample_params
from studio.core.errors import TrainingError
from studio.core.image_io import IMAGE_IO_VERSION, UnreadableImage, load_square
from studio.core.runtime import _natural_key, standardise
from studio.core.spec import (
    ARCHITECTURES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RunSpec,
    auto_image_batch_size,
    auto_image_size,
)

MIN_IMAGES = 10
GPU_RESIDENT_BYTES = 4 * 2**30  # splits smaller than this live on the GPU for the whole run
STATS_SAMPLE = 2000


# --------------------------------------------------------------------------- cache
def cache_path(folder: Path, size: int) -> Path:
    return folder / "cache" / f"rgb-{size}px-v{IMAGE_IO_VERSION}.npy"


def build_cache(
    paths: list[str], size: int, target: Path, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """Decode and fit every picture into ``target`` (``uint8 [n, 3, size, size]``), unless it is there.

    Written to a temporary file beside it and renamed, so a crash never leaves half a cache and two
    runs building the same cache at once both end with a complete one.
    """
    if target.is_file():
        cached = np.load(target, mmap_mode="c")
        if cached.shape == (len(paths), 3, size, size) and cached.dtype == np.uint8:
            return cached
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=target.parent)
    os.close(handle)
    try:
        _fill_cache(paths, size, temporary, progress)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return np.load(target, mmap_mode="c")


def _fill_cache(paths: list[str], size: int, file: str, progress: Callable[[int, int], None] | None) -> None:
    out = np.lib.format.open_memmap(file, mode="w+", dtype=np.uint8, shape=(len(paths), 3, size, size))

    def fill(i: int) -> None:
        try:
            out[i] = load_square(paths[i], size).transpose(2, 0, 1)
        except UnreadableImage as err:
            raise TrainingError(
                f"The stored picture {paths[i]} cannot be read any more ({err}); delete the data set and "
                "add the zip again."
            ) from None

    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes without holding the GIL
        for done, _ in enumerate(pool.map(fill, range(len(paths))), start=1):
            if progress is not None and (done % 100 == 0 or done == len(paths)):
                progress(done, len(paths))
    out.flush()


# --------------------------------------------------------------------------- augmentation
class BatchAugmenter:
    """The spec's augmentation for a whole batch at once, each picture with its own random parameters
    (``studio.core.augment.sample_params``): crop, rotation and flips as one affine resample
    (``affine_grid`` + bilinear ``grid_sample``, black outside the picture), then brightness, contrast
    and saturation. Works on ``float [B, 3, S, S]`` in 0–1 on any device."""

    def __init__(self, settings: Any, seed: int = 0):
        self.settings = settings
        self.rng = np.random.default_rng(seed)

    def __call__(self, x: torch.Tensor, share: tuple[int, int] | None = None) -> torch.Tensor:
        """``share`` (several processes, see :class:`ImageBatches`): ``x`` is the pictures from ``start``
        on of a batch of ``total``. Every process then draws the parameters of the whole batch (the
        same generator, the same draws) and applies its own part: each picture is varied as on one
        device, and the generator's state, which a checkpoint keeps, is the same on every process."""
        if share is None:
            return self.apply(x, sample_params(self.rng, x.shape[0], self.settings))
        start, total = share
        params = sample_params(self.rng, total, self.settings)
        part = {
            f.name: getattr(params, f.name)[start : start + x.shape[0]] for f in dataclasses.fields(params)
        }
        return self.apply(x, dataclasses.replace(params, **part))

    @staticmethod
    def apply(x: torch.Tensor, params: Any) -> torch.Tensor:
        if params.moves:
            theta = torch.from_numpy(params.matrices()).to(device=x.device, dtype=x.dtype)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if params.recolours:

            def per_image(values: np.ndarray) -> torch.Tensor:
                return torch.from_numpy(values).to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)

            weights = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            x = (x * per_image(params.brightness)).clamp_(0.0, 1.0)
            mean = (x * weights).sum(1, keepdim=True).mean((2, 3), keepdim=True)
            x = ((x - mean) * per_image(params.contrast) + mean).clamp_(0.0, 1.0)
            gray = (x * weights).sum(1, keepdim=True)
            x = ((x - gray) * per_image(params.saturation) + gray).clamp_(0.0, 1.0)
        return x


# --------------------------------------------------------------------------- batches
class ImageBatches:
    """``(uint8 pictures [B, 3, S, S], labels [B])`` gathered from the cache by index, reshuffled every
    pass when ``shuffle`` is set. A last training batch of one picture is dropped (batch norm cannot
    train on one).

    With ``world`` > 1 processes training together (DDP), this is process ``rank``'s part:

    - training (``shuffle``): every process draws the same order of all the training pictures (the
      same seed, the same generator), cuts it into the same batches of ``batch_size`` pictures and
      keeps its own share of each (the ``rank``-th of ``world`` nearly equal parts). So an update still
      learns from ``batch_size`` pictures, every process takes the same number of steps and each
      picture is used once per epoch. A last batch with fewer than two pictures per process is left
      out (:func:`~lightning_modules.tabular.data.sharded_steps`). Each batch is
      ``(pictures, labels, (start, total))``: where this share starts in a batch of ``total``, for
      the augmentation (:class:`BatchAugmenter`); the DataModule drops it after the transfer.
    - validation and test: the ``rank``-th of ``world`` nearly equal consecutive parts of the split
      (in the split's order), in as many batches on every process (the model's buffers are
      synchronised at each one), so a short share ends with empty batches (the module skips them).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        index: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ):
        self.images = images
        self.labels = labels
        self.index = torch.from_numpy(np.asarray(index, dtype=np.int64))
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rank, self.world = rank, world
        self.generator = torch.Generator().manual_seed(seed)
        n = len(index)
        self.drop_single = shuffle and n > 1 and n % batch_size == 1

    def __len__(self) -> int:
        n = len(self.index)
        if self.world > 1:
            return sharded_steps(n, self.batch_size, self.world) if self.shuffle else self._eval_batches
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest and not self.drop_single else 0)

    @property
    def _eval_batches(self) -> int:
        """Validation/test batches on every process: enough for the largest share."""
        return max(1, math.ceil(math.ceil(len(self.index) / self.world) / self.batch_size))

    def _parts(self) -> Iterator[tuple[torch.Tensor, tuple[int, int] | None]]:
        """The indices of each batch (this process's share of it), with where the share lies in its
        whole batch while training on several processes."""
        index = self.index
        if self.shuffle:
            index = index[torch.randperm(len(index), generator=self.generator)]
        index = index.to(self.images.device)
        if self.world == 1:
            for start in range(0, len(self) * self.batch_size, self.batch_size):
                yield index[start : start + self.batch_size], None
        elif self.shuffle:
            for step in range(len(self)):
                rows = index[step * self.batch_size : (step + 1) * self.batch_size]
                shares = torch.tensor_split(rows, self.world)
                start = sum(len(share) for share in shares[: self.rank])
                yield shares[self.rank], (start, len(rows))
        else:
            mine = torch.tensor_split(index, self.world)[self.rank]
            for part in torch.tensor_split(mine, self._eval_batches):
                yield part, None

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        device = self.images.device
        pin = device.type == "cpu" and torch.cuda.is_available()
        for rows, share in self._parts():
            images = self.images.index_select(0, rows)
            labels = self.labels.index_select(0, rows)
            images = images.pin_memory() if pin else images
            yield (images, labels) if share is None else (images, labels, share)


class ImageDataModule(pl.LightningDataModule):
    """Splits an image data set (stratified by class), prepares the uint8 cache and serves batches."""

    def __init__(
        self,
        folder: Path,
        table: Any,
        profile: dict[str, Any],
        spec: RunSpec,
        cache_progress: Callable[[int, int], None] | None = None,
    ):
        super().__init__()
        self.spec = spec
        self.folder = Path(folder)
        labels_text = [str(v) for v in table["label"]]
        self.classes = sorted(set(labels_text), key=_natural_key)
        if len(self.classes) < 2:
            raise TrainingError(
                "The data set has pictures of one class only; classification needs at least two."
            )
        if len(labels_text) < MIN_IMAGES:
            raise TrainingError(
                f"The data set has only {len(labels_text)} pictures; at least {MIN_IMAGES} are needed to train and test."
            )
        lookup = {name: i for i, name in enumerate(self.classes)}
        labels = np.fromiter((lookup[v] for v in labels_text), dtype=np.int64, count=len(labels_text))
        self.label_ids = labels
        split = spec.data
        self.train_idx, self.val_idx, self.test_idx = stratified_split(
            labels, len(labels), split.val_fraction, split.test_fraction, split.seed
        )
        if len(self.val_idx) == 0 or len(self.test_idx) == 0:
            raise TrainingError(
                "Too few pictures to hold some back for validation and testing; add pictures (at least 3 per class)."
            )
        arch = spec.architecture
        median_side = (profile.get("sizes") or {}).get("short_side_median")
        self.image_size = spec.image.size or auto_image_size(arch.name, arch.params, median_side)
        self.relative_paths = [str(p) for p in table["image"]]
        self.sources = [str(p) for p in table["source"]] if "source" in table else list(self.relative_paths)
        self.cache = build_cache(
            [str(self.folder / p) for p in self.relative_paths],
            self.image_size,
            cache_path(self.folder, self.image_size),
            cache_progress,
        )
        self.images = torch.from_numpy(self.cache)
        self.labels = torch.from_numpy(labels)
        info = ARCHITECTURES[arch.name]
        if info.pretrained_weights:  # what the pretrained weights expect (also when trained from scratch)
            self.mean, self.std = list(info.input_mean or IMAGENET_MEAN), list(info.input_std or IMAGENET_STD)
        else:
            self.mean, self.std = channel_stats(self.cache, self.train_idx, seed=split.seed)
        self.augmenter = BatchAugmenter(spec.image, seed=split.seed) if spec.image.augments else None
        self.world_size = 1
        """Processes training together (DDP): set by the engine before training (it changes the steps
        per epoch), checked against the Trainer's in :meth:`setup`."""
        self.rank = 0
        self._train_batches: ImageBatches | None = None
        self._order_state: torch.Tensor | None = None  # from a checkpoint, for the next train loader

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_idx), "val": len(self.val_idx), "test": len(self.test_idx)}

    def targets(self, split: str) -> np.ndarray:
        """The class index of every picture of a split (``train``, ``val``, ``test``), in split order."""
        return self.label_ids[{"train": self.train_idx, "val": self.val_idx, "test": self.test_idx}[split]]

    @property
    def batch_size(self) -> int:
        return self.spec.training.batch_size or auto_image_batch_size(self.image_size, len(self.train_idx))

    @property
    def steps_per_epoch(self) -> int:
        """Training batches per epoch (one optimiser step each, unless gradients are accumulated; with
        several processes, each takes its share of every batch, see :class:`ImageBatches`)."""
        batches = ImageBatches(
            self.images, self.labels, self.train_idx, self.batch_size, True, 0, world=self.world_size
        )
        return max(len(batches), 1)

    def check_world_size(self) -> None:
        """A plain error when the pictures are too few to share among ``world_size`` processes: each
        needs two pictures of every training batch (batch norm) and one of the validation and test
        pictures."""
        world = self.world_size
        if world <= 1:
            return
        train, batch = len(self.train_idx), self.batch_size
        if batch < 2 * world or sharded_steps(train, batch, world) == 0:
            raise TrainingError(
                f"{train} training pictures are too few to share among {world} devices (each needs at "
                f"least two pictures of every batch of {batch}); use fewer devices or a larger batch size."
            )
        held_back = min(len(self.val_idx), len(self.test_idx))
        if held_back < world:
            raise TrainingError(
                f"The data set holds back only {held_back} pictures for validation or testing, fewer "
                f"than the {world} devices that would share them; use fewer devices or add pictures."
            )

    @property
    def preprocessing(self) -> dict[str, Any]:
        """What a bundle needs to prepare a picture: size, resize rule, mean and std (JSON)."""
        from studio.core.image_io import RESIZE_METHOD

        return {
            "size": self.image_size,
            "resize": RESIZE_METHOD,
            "channels": "RGB",
            "layout": "NCHW",
            "scale": "pixel values divided by 255, then minus mean and divided by std, per channel",
            "mean": self.mean,
            "std": self.std,
            "image_io_version": IMAGE_IO_VERSION,
        }

    def setup(self, stage: str | None = None) -> None:
        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        if device.type == "cuda" and self.cache.nbytes <= GPU_RESIDENT_BYTES:
            self.images = self.images.to(device)
            self.labels = self.labels.to(device)
        world = trainer.world_size if trainer is not None else 1
        if world != self.world_size:
            raise RuntimeError(
                f"the DataModule was prepared for {self.world_size} process(es), the Trainer runs {world}"
            )
        self.rank = trainer.global_rank if trainer is not None else 0

    def _batches(self, index: np.ndarray, shuffle: bool) -> ImageBatches:
        """A split's batches; with several processes this process's share of them (the validation and
        test scores are summed over every process by the module)."""
        batch_size = self.batch_size if shuffle else max(self.batch_size, 256)
        return ImageBatches(
            self.images,
            self.labels,
            index,
            batch_size,
            shuffle,
            seed=self.spec.data.seed,
            rank=self.rank,
            world=self.world_size,
        )

    def train_dataloader(self) -> ImageBatches:
        batches = self._batches(self.train_idx, shuffle=True)
        if self._order_state is not None:
            batches.generator.set_state(self._order_state)
        self._train_batches = batches
        return batches

    # A checkpoint keeps the order generator and the augmentation's generator, so a resumed run
    # shuffles and varies its next epochs' pictures as the straight run would have.
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self._train_batches is not None:
            state["order"] = self._train_batches.generator.get_state()
        if self.augmenter is not None:
            state["augment"] = self.augmenter.rng.bit_generator.state
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._order_state = state_dict.get("order")
        if self._order_state is not None and self._train_batches is not None:
            self._train_batches.generator.set_state(self._order_state)
        if self.augmenter is not None and "augment" in state_dict:
            self.augmenter.rng.bit_generator.state = state_dict["augment"]

    def val_dataloader(self) -> ImageBatches:
        return self._batches(self.val_idx, shuffle=False)

    def test_dataloader(self) -> ImageBatches:
        return self._batches(self.test_idx, shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels, *share = batch  # a training share on several processes: see ImageBatches
        x = images.float().div_(255.0)
        trainer = getattr(self, "trainer", None)
        if self.augmenter is not None and trainer is not None and trainer.training:
            x = self.augmenter(x, share[0] if share else None)
        # Channels-last memory on every device (the network is converted too): faster convolutions on
        # GPUs, and on CPUs for the small CNN and the MobileNets/EfficientNet (ResNets: about even).
        x = standardise(x, self.mean, self.std).contiguous(memory_format=torch.channels_last)
        return x, labels


def channel_stats(cache: np.ndarray, index: np.ndarray, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0–1 scale) of up to ``STATS_SAMPLE`` training pictures."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(index, size=min(len(index), STATS_SAMPLE), replace=False))
    pixels = torch.from_numpy(np.asarray(cache[chosen])).float().div_(255.0)
    mean = pixels.mean(dim=(0, 2, 3))
    std = pixels.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]
