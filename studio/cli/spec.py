"""The run options shared by ``python -m studio train`` and ``jobs submit``: the flags, and the run
spec they make (with the data set's suggestions filled in). Only argparse at import time."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``train`` (also used by ``jobs submit``)."""
    parser.add_argument(
        "--data",
        help="a CSV file, a zip of picture folders, a stored data set id, or "
        "sample:wine|breast_cancer|diabetes|digits (digits: pictures)",
    )
    parser.add_argument("--target", help="the column to predict (default: the suggested one)")
    parser.add_argument(
        "--task",
        help="classification, regression or image_classification (or a task of a data kind named in "
        "STUDIO_MODALITIES); default: the suggested one",
    )
    parser.add_argument(
        "--arch", help="architecture (default: mlp); a language model's folder or id fine-tunes it"
    )
    parser.add_argument(
        "--base-model",
        help="fine-tune this language model (a folder, or a Hugging Face id in the local cache)",
    )
    parser.add_argument("--epochs", type=int, help="most epochs to train")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="learning rate")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", help="32, 16-mixed or bf16-mixed")
    parser.add_argument("--preset", choices=["fast", "balanced", "thorough"])
    parser.add_argument("--name", help="a readable run name")
    parser.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="use all my data: train K fold models (each checked on its own validation rows, the test "
        "rows kept aside) and average them into one model; tables, and texts read by the bag of words",
    )
    parser.add_argument("--spec", help="a YAML or JSON spec file with every setting; flags override it")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any spec setting, e.g. --set optimizer.name=sgd --set architecture.params.width=128",
    )


def spec_from_args(args: argparse.Namespace) -> Any:
    """Build and validate the run spec from ``--spec`` and the flags (flags win)."""
    import yaml

    from studio.core.errors import SpecError
    from studio.core.spec import RunSpec, apply_preset, load_spec_dict, set_dotted
    from studio.core.tasks import cli_defaults
    from studio.data import image_defaults, load_profile, resolve_dataset, task_for_target

    data = load_spec_dict(args.spec) if args.spec else {}
    data.setdefault("data", {})
    if not isinstance(data["data"], dict):
        raise SpecError("The spec's 'data' entry must be a group of settings.")
    if args.data:
        data["data"]["dataset_id"] = resolve_dataset(args.data).id
    elif "dataset_id" in data["data"]:
        data["data"]["dataset_id"] = resolve_dataset(str(data["data"]["dataset_id"])).id
    else:
        raise SpecError("Say which data to train on: --data FILE.csv (or a data set id, or sample:wine).")
    profile = load_profile(data["data"]["dataset_id"])
    if args.target:
        data["data"]["target"] = args.target
    arch_flag = args.arch
    # --arch names a base model only as a folder or a Hub id (org/name); a mistyped network name such as
    # 'transformer' stays a network name, refused with the list of networks.
    arch_model = args.arch if args.arch and ("/" in args.arch or Path(args.arch).expanduser().is_dir()) else None
    base_model = getattr(args, "base_model", None) or arch_model
    if any(fill(data, base_model, profile) for fill in cli_defaults()):
        arch_flag = None  # a kind took it as its base model, set above
    columns = [c["name"] for c in profile.get("columns", [])]
    if not data["data"].get("target"):
        if not profile.get("suggested_target"):
            shown = ", ".join(columns[:8]) + (" …" if len(columns) > 8 else "")
            raise SpecError(
                f"Say which column to predict with --target COLUMN; the studio cannot tell for this table "
                f"(its columns: {shown})."
            )
        data["data"]["target"] = profile["suggested_target"]
    if data["data"]["target"] not in columns:
        shown = ", ".join(columns[:30]) + (" …" if len(columns) > 30 else "")
        raise SpecError(
            f"The target column '{data['data']['target']}' is not in the data set; its columns are: {shown}."
        )
    if args.task:
        data["task"] = args.task
    elif "task" not in data:
        data["task"] = task_for_target(profile, data["data"]["target"])
    flags = {
        "architecture.name": arch_flag,
        "training.epochs": args.epochs,
        "training.batch_size": args.batch_size,
        "optimizer.learning_rate": args.lr,
        "training.device": args.device,
        "training.precision": args.precision,
        "name": args.name,
        "data.use_all_data": True if getattr(args, "folds", None) else None,
        "data.folds": getattr(args, "folds", None),
    }
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set expects KEY=VALUE (e.g. training.epochs=10), got '{item}'.")
        flags[key.strip()] = yaml.safe_load(value) if value.strip() else None
    if arch_flag and arch_flag != data.get("architecture", {}).get("name"):
        data.setdefault("architecture", {})["params"] = {}
    for key, value in image_defaults(profile).items():  # e.g. no mirroring for digits, unless asked
        if flags.get(key) is None and not _has_dotted(data, key):
            set_dotted(data, key, value)
    for key, value in flags.items():
        if value is not None:
            set_dotted(data, key, value)
    spec = RunSpec.from_dict(data)
    if not _has_dotted(data, "data.use_all_data"):
        spec = with_default_fold_models(spec, profile)
    if not _has_dotted(data, f"architecture.params.{NUMBER_EMBEDDING}"):
        spec = with_default_number_embedding(spec, profile)
    if args.preset:
        spec = apply_preset(spec, args.preset)
        # Flags given explicitly still win over the preset.
        explicit = {k: v for k, v in flags.items() if v is not None and k in ("training.epochs",)}
        if explicit:
            spec = spec.with_changes(**explicit)
    return spec


def _has_dotted(data: dict[str, Any], path: str) -> bool:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True




NUMBER_EMBEDDING = "numeric_embedding"


def with_default_number_embedding(spec: Any, profile: dict[str, Any]) -> Any:
    """The spec with the table network's number embedding the data calls for (periodic where a number
    input has a long right tail, as the Train form starts with it:
    :func:`studio.modalities.tabular.profile.number_embedding_default`), for a network that has one."""
    from studio.core.spec import ARCHITECTURES
    from studio.modalities.tabular.profile import number_embedding_default

    if NUMBER_EMBEDDING not in ARCHITECTURES[spec.architecture.name].params_model.model_fields:
        return spec
    choice, _ = number_embedding_default(profile, spec.data.target, spec.data.features)
    return spec.with_changes(**{f"architecture.params.{NUMBER_EMBEDDING}": choice})


def with_default_fold_models(spec: Any, profile: dict[str, Any]) -> Any:
    """The spec with 'use all my data' on where the data set is small enough for it to start on (as the
    Train form ticks it: :func:`studio.modalities.fold_models_by_default`), unless the spec's other
    settings leave no room for it (several devices, more fold models than blocks of validation rows)."""
    from studio.core.spec import fold_blocks
    from studio.modalities import fold_models_by_default

    rows = int(profile.get("n_rows") or 0)
    if not fold_models_by_default(spec.task, spec.architecture.name, rows):
        return spec
    if spec.training.devices != "1" or spec.data.folds > fold_blocks(spec.data.val_fraction, spec.data.test_fraction):
        return spec
    return spec.with_changes(**{"data.use_all_data": True})
