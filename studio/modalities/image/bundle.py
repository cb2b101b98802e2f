"""The image bundle: the picture network's weights with the table runtime (which holds the networks) and
the picture reader (``training_studio_image_io.py``, a copy of :mod:`studio.core.image_io`), an ONNX
file whose input is the normalised ``float [batch, 3, size, size]`` batch, and the kind's words for the
generic bundle code (:data:`FLAVOUR`: what it needs installed, its usage snippet and README, the check of
its picture preparation, pictures as what ``LoadedBundle.predict`` takes). ``studio_model.json`` holds
the classes (``target.classes``) and the preparation (``size``, resize rule, ``mean``/``std``).

Importing this module is cheap (the pages read :data:`FLAVOUR`); torch and torchvision are imported by
the functions that need them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.bundle.layout import (
    _CORE,
    CODE_PREFIX,
    INFO_FILE,
    ONNX_FILE,
    RUNTIME_FILE,
    BundleFlavour,
)
from studio.bundle.onnx import _exported, export_inputs
from studio.bundle.writer import _finite_metrics, _public_version, check_finite_weights, write_kind_bundle
from studio.core.errors import BundleError

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from studio.core.spec import RunSpec

KIND = "image"
IMAGE_IO_FILE = f"{CODE_PREFIX}image_io.py"


def _snippet_input(picture: str) -> str:
    return (
        "# One row per picture: a file path, or the file's bytes.\n"
        f"pictures = pd.DataFrame({{'image': [{picture!r}]}})\n"
        "predictions = model.predict(pictures)  # predicted_label + probability_<class> per class\n"
    )


def _title(info: dict[str, Any]) -> str:
    return f"image classification ({', '.join(info['target']['classes'])})"


def _predicts(info: dict[str, Any]) -> str:
    return (
        "`predict` takes a DataFrame with an `image` column (picture file paths or bytes) and returns "
        f"`predicted_{info['target']['name']}` and one `probability_<class>` column per class."
    )


def _check_info(info: dict[str, Any], name: str) -> None:
    preprocessing = info.get("preprocessing")
    if not isinstance(preprocessing, dict) or not {"size", "mean", "std"} <= set(preprocessing):
        raise BundleError(
            f"'{name}' holds an 'image' model without its picture preparation (size, mean, std) in "
            f"{INFO_FILE}; it is damaged: download it again."
        )


def _as_input(rows: Any) -> pd.DataFrame:
    from studio.core.runtime import as_image_frame

    return as_image_frame(rows)


FLAVOUR = BundleFlavour(
    KIND,
    needs="mlflow, torch, torchvision, pillow and pandas",
    example_data="photo.jpg",
    snippet_input=_snippet_input,
    title=_title,
    predicts=_predicts,
    info_holds="classes, picture preparation (size, mean, std), network, metrics and the run spec",
    code_files=f"`artifacts/{RUNTIME_FILE}`: the network code; `artifacts/{IMAGE_IO_FILE}`: how pictures are read",
    check_info=_check_info,
    as_input=_as_input,
    loads_without_predictor=True,
)
"""What the generic bundle code knows of picture bundles (registered by :mod:`.registry`)."""


def write_image_bundle(
    path: Path,
    *,
    spec: RunSpec,
    classes: list[str],
    preprocessing: dict[str, Any],
    network_config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    metrics: dict[str, float],
) -> Path:
    """Write an image model bundle at ``path`` and return ``path``.

    ``preprocessing`` is the DataModule's (``size``, ``mean``, ``std`` …); ``network_config`` is what
    ``bundle_runtime.build_image_net`` rebuilds the network from. A failed ONNX export is recorded in
    ``studio_model.json``; the bundle is written without it.
    """
    import torchvision

    from studio.core.image_io import IMAGE_IO_VERSION
    from studio.core.pretrained import pretrainable, weights_source
    from studio.core.runtime import build_image_net

    check_finite_weights(state_dict)
    net = build_image_net(network_config)
    net.load_state_dict(state_dict)
    net.eval()

    def reader_and_onnx(staging: Path) -> dict[str, Any]:
        shutil.copyfile(_CORE / "image_io.py", staging / IMAGE_IO_FILE)
        return {
            "onnx": _try_export_image_onnx(net, staging / ONNX_FILE, int(preprocessing["size"]), len(classes))
        }

    info: dict[str, Any] = {
        "kind": KIND,
        "predictor": {"module": "runtime", "class": "ImagePredictor"},
        "task": spec.task,
        "target": {"name": spec.data.target, "task": spec.task, "classes": list(classes)},
        "input_columns": [{"name": "image", "kind": KIND}],
        "preprocessing": preprocessing,
        "network": network_config,
        "metrics": _finite_metrics(metrics),
        "spec": spec.model_dump(mode="json"),
        "image_io_version": IMAGE_IO_VERSION,
    }
    if spec.architecture.params.get("pretrained") and pretrainable(spec.architecture.name):
        # the weights training started from (the bundle's own weights.pt holds the whole trained network)
        info["pretrained_from"] = weights_source(spec.architecture.name)
    torchvision_version = _public_version(torchvision.__version__)
    return write_kind_bundle(
        path,
        info,
        state_dict,
        requirements=[f"torchvision=={torchvision_version}", "pillow>=10"],
        extra=reader_and_onnx,
        library_versions={"torchvision": torchvision_version},
    )


def _try_export_image_onnx(net: torch.nn.Module, path: Path, size: int, n_classes: int) -> dict[str, Any]:
    """Export an image network to ONNX (input ``image``: normalised ``float [batch, 3, size, size]``)."""
    return _exported(
        lambda: _export_image_onnx(net, path, size),
        path,
        n_classes,
        "Input: pictures prepared as in training_studio_image_io.load_square (RGB, shorter side resized "
        "to preprocessing.size, centre crop), as float32 NCHW divided by 255, minus preprocessing.mean, "
        "divided by preprocessing.std per channel. Output: one logit per class in the order of "
        "target.classes; softmax gives probabilities.",
    )


def _export_image_onnx(net: torch.nn.Module, path: Path, size: int, exporter: str = "auto") -> str:
    """Export with a dynamic batch axis (TorchScript exporter first: faster; torch.export as fallback)."""
    import torch

    example = torch.zeros(2, 3, size, size, dtype=torch.float32)
    return export_inputs(net, path, (example,), ["image"], exporter)


def predict_pictures(bundle: Any, pictures: list[Any], names: list[str] | None = None) -> pd.DataFrame:
    """One row per picture (paths or bytes) for a loaded picture bundle: ``image`` (its name), the
    prediction columns, and ``error`` (why a picture could not be read; its predictions are then empty).
    For the Predict page and ``studio predict``: an unreadable picture is reported, not raised."""
    import pandas as pd

    from studio.core.image_io import open_image
    from studio.core.runtime import image_source

    if bundle.kind != KIND:
        raise BundleError("This model predicts from table columns, not from pictures.")
    names = names or [p if isinstance(p, str) else f"picture {i + 1}" for i, p in enumerate(pictures)]
    errors: list[str | None] = []
    for picture in pictures:
        try:
            open_image(image_source(picture), draft_size=64).close()
            errors.append(None)
        except (ValueError, TypeError) as err:
            errors.append(str(err))
    good = [i for i, e in enumerate(errors) if e is None]
    columns = bundle.prediction_columns
    frame = pd.DataFrame({"image": names}).reindex(columns=["image", *columns, "error"])
    frame["error"] = errors
    if good:
        predicted = bundle.model.predict(pd.DataFrame({"image": [pictures[i] for i in good]}))
        for column in columns:
            frame[column] = frame[column].astype(predicted[column].dtype if column in predicted else object)
            frame.loc[good, column] = predicted[column].to_numpy()
    return frame
