"""The built-in picture sample: scikit-learn's handwritten digits as 32-pixel pictures in class folders,
stored once from scikit-learn's package files, offered by the CLI (``sample:digits``) and the Data page;
a short training on a part of it learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio import data as datasets
from studio.core.errors import DatasetError
from studio.data.samples import DIGIT_SIDE, digits_zip
from tests.mlflow_store import new_store


def test_the_sample_stores_1797_pictures_in_10_class_folders_once(studio_home: Path) -> None:
    info = datasets.add_sample("digits")
    assert (info.kind, info.n_rows, info.source_file) == ("images", 1797, "sample:digits")
    table = datasets.image_paths(info.id)
    counts = table["label"].astype(str).value_counts()
    assert sorted(counts.index) == [str(d) for d in range(10)] and counts.sum() == 1797
    assert counts.min() >= 170  # scikit-learn's 174–183 per digit: none was dropped as a copy
    folders = {Path(p).parent for p in table["path"]}
    assert len(folders) == 10 and all(f.is_dir() for f in folders)  # one stored folder per class
    with Image.open(table["path"].iloc[0]) as first:
        assert first.size == (DIGIT_SIDE, DIGIT_SIDE)
        pixels = np.asarray(first.convert("L"))
    assert pixels.max() == 255 and pixels.min() < 80  # white paper, dark ink
    profile = datasets.load_profile(info.id)
    assert profile["n_classes"] == 10 and profile["n_images"] == 1797
    assert datasets.image_defaults(profile) == {"image.horizontal_flip": False}  # a mirrored 2 is no 2
    assert datasets.add_sample("digits") == info and datasets.resolve_dataset("sample:digits") == info
    assert len(datasets.list_datasets()) == 1


def test_the_sample_zip_is_the_same_bytes_every_time() -> None:
    assert digits_zip(per_class=3) == digits_zip(per_class=3)


def test_the_cli_trains_on_the_sample(studio_home: Path) -> None:
    from studio.cli.main import build_parser
    from studio.cli.spec import spec_from_args

    args = build_parser().parse_args(["train", "--data", "sample:digits"])
    spec = spec_from_args(args)
    (info,) = datasets.list_datasets()
    assert (spec.task, spec.data.dataset_id, spec.data.target) == ("image_classification", info.id, "label")
    assert spec.image.horizontal_flip is False
    with pytest.raises(DatasetError, match="sample:digits"):  # the samples a typo is told of
        datasets.resolve_dataset("sample_digits")


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory):
    """One short real run with the defaults on 40 pictures of each digit (400)."""
    tmp = tmp_path_factory.mktemp("digits")
    patch = pytest.MonkeyPatch()
    patch.setenv("STUDIO_HOME", str(tmp / "home"))
    patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
    try:
        from studio.core.spec import RunSpec
        from studio.engine.training import train

        info = datasets.add_image_zip(digits_zip(per_class=40), "digits", filename="digits.zip")
        spec = RunSpec.from_dict(
            {
                "task": "image_classification",
                "data": {"dataset_id": info.id},
                "training": {"epochs": 6},
                "image": {"horizontal_flip": False},
            }
        )
        yield train(spec)
    finally:
        patch.undo()


def test_a_short_training_on_part_of_the_sample_learns(short_run) -> None:
    # 10 classes: chance is 0.1; six epochs on 280 pictures already read most digits
    assert short_run.status == "FINISHED"
    assert short_run.test_metrics["test/accuracy"] >= 0.6, short_run.test_metrics
