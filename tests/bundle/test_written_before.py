"""Bundles written by earlier versions of the studio still load and predict the same: the zips under
``written_before/`` were written by the bundle writers at two commits, from the same untrained networks
as ``tests/images/test_bundle_images.py`` and ``tests/bundle/test_bundle.py`` build (fixed seeds):

- ``*_492406e.zip``: before ``studio_model.json`` named its ``predictor`` (their own pyfunc entry knows
  the kind: the reader must accept their kind without one);
- ``*_2c42a57.zip``: before the kinds' bundle code moved to ``studio/modalities/<kind>/bundle.py`` (today's
  writers write the same files, fields and README).

A bundle's kind is also checked when it names no predictor: an unknown one is refused in one sentence."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest

from studio import bundle
from studio.core.errors import BundleError
from studio.modalities import predict_csv
from studio.modalities.image.bundle import predict_pictures
from tests.bundle.test_bundle import assert_same, make_frame, rewrite_info
from tests.bundle.test_bundle import make_state as table_state
from tests.bundle.test_bundle import reference as table_reference
from tests.images.conftest import CLASSES, encode, picture
from tests.images.test_bundle_images import make_state as picture_state
from tests.images.test_bundle_images import reference as picture_reference

HERE = Path(__file__).resolve().parent / "written_before"
PICTURE_BUNDLES = ["image_492406e.zip", "image_2c42a57.zip"]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    import numpy as np

    folder = tmp_path_factory.mktemp("old-bundle-pictures")
    rng = np.random.default_rng(5)
    paths = []
    for i, kind in enumerate([*CLASSES, *CLASSES]):
        path = folder / f"{i}_{kind}.png"
        path.write_bytes(encode(picture(kind, rng)))
        paths.append(path)
    return paths


@pytest.mark.parametrize("name", PICTURE_BUNDLES)
def test_an_old_picture_bundle_loads_and_predicts_as_it_did(
    name: str, pictures: list[Path], tmp_path
) -> None:
    path = HERE / name
    info = bundle.read_bundle_info(path)
    assert info["kind"] == "image"
    expected = picture_reference(picture_state("small_cnn"), pictures)
    with bundle.load_bundle(path) as loaded:
        pd.testing.assert_frame_equal(
            loaded.predict([str(p) for p in pictures]), expected, atol=1e-5, check_exact=False
        )
        checked = predict_pictures(loaded, [str(pictures[0]), b"not a picture"], ["a", "b"])
    assert checked["error"].isna().tolist() == [True, False]
    assert checked.loc[0, "predicted_label"] == expected.loc[0, "predicted_label"]
    # what `python -m studio predict old.zip pictures/` does
    folder = tmp_path / "pictures"
    folder.mkdir()
    for p in pictures:
        (folder / p.name).write_bytes(p.read_bytes())
    out = predict_csv(path, folder)
    assert sorted(out["image"]) == sorted(p.name for p in pictures) and "error" not in out


@pytest.mark.parametrize("name", ["tabular_492406e.zip", "tabular_2c42a57.zip"])
def test_an_old_table_bundle_loads_and_predicts_as_it_did(name: str) -> None:
    path = HERE / name
    assert ("predictor" in bundle.read_bundle_info(path)) == ("492406e" not in name)
    rows = make_frame(30, seed=7)
    with bundle.load_bundle(path) as loaded:
        assert_same(loaded.predict(rows), table_reference(table_state("classification"), rows), 1e-5)


def test_a_bundle_of_an_unknown_kind_without_a_predictor_is_refused(tmp_path) -> None:
    unknown = rewrite_info(HERE / "tabular_492406e.zip", tmp_path / "sound.zip", kind="sound")
    with pytest.raises(BundleError, match=r"holds a 'sound' model, which .* \(it loads: tabular, image\)\."):
        bundle.read_bundle_info(unknown)


def test_the_writers_keep_the_file_names_and_info_fields_of_old_bundles(tmp_path) -> None:
    """What today's writers put in a bundle is what the old ones did (names in the zip, fields of
    ``studio_model.json``), beside the ``predictor`` that later bundles name."""
    from studio.modalities.image.bundle import write_image_bundle
    from studio.modalities.tabular.bundle import write_tabular_bundle

    written = {
        "image_2c42a57.zip": write_image_bundle(tmp_path / "image.zip", **picture_state("small_cnn")),
        "tabular_2c42a57.zip": write_tabular_bundle(tmp_path / "tabular.zip", **table_state("classification")),
    }
    for old, new in written.items():
        with zipfile.ZipFile(HERE / old) as before, zipfile.ZipFile(new) as now:
            assert sorted(now.namelist()) == sorted(before.namelist()), old
            fields_before = set(bundle.read_bundle_info(HERE / old))
            assert set(bundle.read_bundle_info(new)) - {"predictor"} == fields_before - {"predictor"}, old
            assert now.read("README.md") == before.read("README.md"), old
