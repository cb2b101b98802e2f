"""The model bundle: one zip that predicts without the studio.

``layout`` names the files and formats and holds each kind's :class:`BundleFlavour` (cheap to import:
the pages use ``python_snippet``), ``writer`` writes a bundle from what a kind's bundle module hands it
(``write_kind_bundle``), ``onnx`` exports a network alone, ``reader`` opens, checks, loads and predicts
with one. The runtime shipped inside every bundle is ``studio/core/runtime.py`` (plus the kind's own
shipped files) and ``pyfunc.py`` here is the MLflow entry point; those files import nothing of the
studio. torch and MLflow are imported by the functions that need them. What a kind's bundles hold and
say lives in the kind's package (``studio/modalities/<kind>/bundle.py``).
"""

from studio.bundle.layout import (
    ENTRY_FILE,
    FORMAT,
    FORMAT_VERSION,
    INFO_FILE,
    INFO_MEMBER,
    MAX_UNPACKED_BYTES,
    ONNX_FILE,
    RUNTIME_FILE,
    WEIGHTS_FILE,
    BundleFlavour,
    flavour,
    needs,
    python_snippet,
    register_flavour,
)
from studio.bundle.reader import LoadedBundle, load_bundle, read_bundle_info
from studio.bundle.writer import check_finite_weights, write_kind_bundle

__all__ = [
    "ENTRY_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "INFO_FILE",
    "INFO_MEMBER",
    "MAX_UNPACKED_BYTES",
    "ONNX_FILE",
    "RUNTIME_FILE",
    "WEIGHTS_FILE",
    "BundleFlavour",
    "LoadedBundle",
    "check_finite_weights",
    "flavour",
    "load_bundle",
    "needs",
    "python_snippet",
    "read_bundle_info",
    "register_flavour",
    "write_kind_bundle",
]
