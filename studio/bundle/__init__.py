"""The model bundle: one zip that predicts without the studio.

``layout`` names the files and formats (cheap to import: the pages use ``python_snippet``), ``writer``
writes a bundle from a trained network, ``onnx`` exports the network alone, ``reader`` opens, checks,
loads and predicts with one. The runtime shipped inside every bundle is ``studio/core/runtime.py``
(plus ``studio/core/image_io.py`` for pictures) and ``pyfunc.py`` here is the MLflow entry point; those
three files import nothing of the studio. torch and MLflow are imported by the functions that need them.
"""

from studio.bundle.layout import (
    ENTRY_FILE,
    FORMAT,
    FORMAT_VERSION,
    IMAGE_IO_FILE,
    INFO_FILE,
    INFO_MEMBER,
    KIND_IMAGE,
    KIND_TABULAR,
    KINDS,
    MAX_UNPACKED_BYTES,
    NEEDS,
    ONNX_FILE,
    RUNTIME_FILE,
    WEIGHTS_FILE,
    python_snippet,
)
from studio.bundle.reader import LoadedBundle, load_bundle, read_bundle_info
from studio.bundle.writer import check_finite_weights, write_image_bundle, write_tabular_bundle

__all__ = [
    "ENTRY_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "IMAGE_IO_FILE",
    "INFO_FILE",
    "INFO_MEMBER",
    "KINDS",
    "KIND_IMAGE",
    "KIND_TABULAR",
    "MAX_UNPACKED_BYTES",
    "NEEDS",
    "ONNX_FILE",
    "RUNTIME_FILE",
    "WEIGHTS_FILE",
    "LoadedBundle",
    "check_finite_weights",
    "load_bundle",
    "python_snippet",
    "read_bundle_info",
    "write_image_bundle",
    "write_tabular_bundle",
]
