"""The image data kind: pictures in, the class each shows out (``image_classification``). Ingest of
picture zips is ``ingest`` here; the Lightning code (DataModule with its uint8 cache, LightningModule,
pretrained networks) is ``lightning_modules.image``, and the networks and picture reading shipped in
bundles ``studio.core.runtime`` and ``studio.core.image_io``."""

from __future__ import annotations

import dataclasses
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from studio import tracking
from studio.core.errors import BundleError
from studio.core.spec import RunSpec
from studio.modalities import register


@dataclass
class PreparedPictures:
    data: Any
    net: Any
    pretrained_from: str | None = None

    def run_tags(self, precision: str) -> dict[str, str]:
        from lightning_modules.image.networks import trainable_share

        tags = {
            tracking.TAG_IMAGE_SIZE: str(self.data.image_size),
            tracking.TAG_PRECISION: precision,
            tracking.TAG_TRAINABLE_SHARE: f"{trainable_share(self.net):.4f}",
        }
        if self.pretrained_from:
            tags[tracking.TAG_PRETRAINED_FROM] = self.pretrained_from
        return tags

    def lightning_module(self, spec: RunSpec, steps_per_epoch: int, accumulate: int) -> Any:
        import torch

        from lightning_modules.image.module import ImageLightningModule
        from lightning_modules.image.networks import frozen_norms

        net = self.net.to(memory_format=torch.channels_last)  # as the DataModule's batches
        return ImageLightningModule(
            net,
            self.data.n_classes,
            spec.optimizer,
            spec.scheduler,
            spec.early_stopping.metric,
            spec.training.epochs,
            steps_per_epoch=steps_per_epoch,
            gradient_clip=spec.training.gradient_clip,
            frozen=frozen_norms(net),
            accumulate=accumulate,
        )

    def after_test(self, run_id: str, spec: RunSpec, module: Any) -> None:
        """The test split's confusion matrix and per-picture predictions, for the run page."""
        import numpy as np
        import torch

        if not module.test_probabilities:
            return
        data = self.data
        probabilities = torch.cat(module.test_probabilities).float().numpy()
        predicted = probabilities.argmax(axis=1)
        truth = data.label_ids[data.test_idx]
        k = data.n_classes
        matrix = np.zeros((k, k), dtype=np.int64)
        np.add.at(matrix, (truth, predicted), 1)
        classes = data.classes
        rows = [
            {
                "image": data.relative_paths[index],
                "source": data.sources[index],
                "label": classes[truth[j]],
                "predicted": classes[predicted[j]],
                "probability": round(float(probabilities[j, predicted[j]]), 6),
                "probabilities": [round(float(v), 6) for v in probabilities[j]],
            }
            for j, index in enumerate(data.test_idx)
        ]
        mlflow_client = tracking.client()
        mlflow_client.log_dict(
            run_id, {"classes": classes, "matrix": matrix.tolist()}, tracking.CONFUSION_ARTIFACT
        )
        mlflow_client.log_dict(
            run_id,
            tracking.json_safe({"dataset_id": spec.data.dataset_id, "classes": classes, "rows": rows}),
            tracking.PREDICTIONS_ARTIFACT,
        )

    def write_bundle(self, folder: Path, spec: RunSpec, module: Any, metrics: dict[str, float]) -> Path:
        from lightning_modules.image.networks import network_config
        from studio.modalities.image.bundle import write_image_bundle

        data = self.data
        return write_image_bundle(
            folder / "model.zip",
            spec=spec,
            classes=data.classes,
            preprocessing=data.preprocessing,
            network_config=network_config(spec.architecture.name, spec.architecture.params, data.n_classes),
            state_dict={k: v.detach().cpu() for k, v in module.net.state_dict().items()},
            metrics=metrics,
        )

    def add_to_result(self, result: Any) -> None:
        return None


class ImageModality:
    name = "image"
    form_key_prefix = "img__"  # pictures keep settings of their own: train__img__training__epochs
    search_batch_sizes = (16, 32, 64)
    search_learning_rates = (1e-5, 1e-2)
    lr_find_steps = 60  # a picture batch costs far more than a table's (seconds on a CPU)

    def search_dimensions(self, spec: RunSpec, networks: list[str] | None = None) -> list[Any]:
        from studio.modalities.image.search import dimensions

        return dimensions(spec, networks)

    def device_plan(self, plan: Any) -> Any:
        """Pictures train in 32-bit on a CPU (16-bit convolutions are slower there) and, on a GPU, in the
        spec's precision (mixed bfloat16 by default for images), falling back to float16 mixed precision
        on GPUs without bfloat16."""
        import torch

        if plan.accelerator == "cpu":
            return dataclasses.replace(plan, precision="32-true")
        if plan.precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
            return dataclasses.replace(plan, precision="16-mixed")
        return plan

    def prepare(
        self, spec: RunSpec, dataset: Any, table: pd.DataFrame, profile: dict[str, Any]
    ) -> PreparedPictures:
        """The DataModule (split, uint8 cache) and the network (pretrained weights read from the cache),
        the weights checked before thousands of pictures are decoded."""
        from lightning_modules.image.data import ImageDataModule
        from lightning_modules.registry import ImageShape, build_network
        from studio.core.pretrained import check_weights, pretrainable, weights_source

        name, params = spec.architecture.name, spec.architecture.params
        check_weights(name, params)
        data = ImageDataModule(dataset.path, table, profile, spec)
        net = build_network(name, params, ImageShape(data.n_classes))
        started = weights_source(name) if params.get("pretrained") and pretrainable(name) else None
        return PreparedPictures(data, net, started)

    def explain_model(self, *args: Any) -> Any:
        from studio.modalities.image.explain import explain_model

        return explain_model(*args)

    def explain_row(self, *args: Any) -> Any:
        from studio.modalities.image.explain import explain_row

        return explain_row(*args)

    def compress_model(self, *args: Any) -> Any:
        from studio.modalities.image.compress import compress_model

        return compress_model(*args)

    def predict_file(self, bundle_zip: Path, info: dict[str, Any], data: Path) -> pd.DataFrame:
        """``data`` may be a picture, a folder or a zip of pictures, or a CSV with an ``image`` column of
        picture paths (relative to the CSV's folder or absolute), or a plain list of such paths."""
        from studio.bundle.reader import load_bundle
        from studio.core.runtime import image_column
        from studio.modalities.image.bundle import predict_pictures

        if not data.exists():
            raise BundleError(f"There is nothing at '{data}' to predict (no such file or folder).")
        names: list[str]
        pictures: list[Any]
        if data.is_dir():
            from studio.modalities.image.ingest import named_like_picture

            files = sorted(
                p for p in data.rglob("*") if p.is_file() and named_like_picture(str(p.relative_to(data)))
            )
            names, pictures = [str(p.relative_to(data)) for p in files], [str(p) for p in files]
        elif zipfile.is_zipfile(data):
            names, pictures = pictures_in_zip(data)
        elif data.suffix.lower() in (".csv", ".tsv", ".txt"):
            frame = picture_list(data)
            try:
                column = image_column(frame)
            except ValueError as err:
                raise BundleError(str(err)) from None
            names = [str(v) for v in frame[column]]
            pictures = [str(v if Path(str(v)).is_absolute() else data.parent / str(v)) for v in frame[column]]
        else:
            names, pictures = [data.name], [str(data)]
        if not pictures:
            raise BundleError(f"'{data.name}' holds no pictures to predict.")
        with load_bundle(bundle_zip) as bundle:
            result = predict_pictures(bundle, pictures, names)
        if result["error"].isna().all():
            result = result.drop(columns=["error"])
        return result


def picture_list(path: Path) -> pd.DataFrame:
    """A CSV of picture paths as a table. A list of paths, one per line (with a header such as ``image``,
    or none), is read as one column: a training table's rule of at least two columns does not apply to
    it. Anything with a delimiter on its first line is read as a table (its ``image`` column is used)."""
    from studio.modalities.image.ingest import named_like_picture
    from studio.modalities.tabular.ingest import DELIMITERS, decode_text, read_source_bytes, read_table_file

    raw, label = read_source_bytes(path)
    text, _ = decode_text(raw, label)
    lines = [line.strip().strip('"').strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines or any(delimiter in lines[0] for delimiter in DELIMITERS):
        return read_table_file(path)
    header = "image"
    if not named_like_picture(lines[0]):  # a header line (``image``, ``path``), not a picture's path
        header, lines = lines[0], lines[1:]
    return pd.DataFrame({header: lines})


def pictures_in_zip(path: Path) -> tuple[list[str], list[bytes]]:
    """Every picture-named file of a zip, read in memory under the data sets' zip limits."""
    from studio.core.errors import DatasetError
    from studio.modalities.image.ingest import zip_pictures

    try:
        with zipfile.ZipFile(path) as zf:
            found = list(zip_pictures(zf, path.name))
    except DatasetError as err:
        raise BundleError(str(err)) from None
    return [name for name, _ in found], [data for _, data in found]


register(ImageModality())
