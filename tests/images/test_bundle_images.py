"""The image bundle: written from untrained networks, loaded in-process and in a Python process where
``studio`` cannot be imported, ONNX against torch, and predicting pictures, zips, folders and CSVs."""

from __future__ import annotations

import base64
import io
import json
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from studio import bundle
from studio.core import image_io
from studio.core.errors import BundleError
from studio.core.runtime import ImagePredictor, build_image_net
from studio.core.spec import RunSpec
from studio.modalities import predict_csv
from studio.modalities.image.bundle import predict_pictures, write_image_bundle
from tests.bundle.outside import BLOCKER, run_outside
from tests.images.conftest import CLASSES, encode, picture
from tests.studio_cli import run_studio

SIZE = 32


def make_state(architecture: str) -> dict[str, Any]:
    """What training hands to ``write_image_bundle``: random weights and batch-norm statistics."""
    params = {"width": 8, "blocks": 2, "dropout": 0.1} if architecture == "small_cnn" else {}
    config = {"architecture": architecture, "n_classes": len(CLASSES), "params": params}
    torch.manual_seed(3)
    net = build_image_net(config)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    spec_data = {"task": "image_classification", "data": {"dataset_id": "shapes-1"}}
    spec_data["architecture"] = {
        "name": architecture,
        "params": {} if architecture != "small_cnn" else params,
    }
    return {
        "spec": RunSpec.from_dict(spec_data),
        "classes": sorted(CLASSES),
        "preprocessing": {"size": SIZE, "mean": [0.5, 0.4, 0.45], "std": [0.25, 0.2, 0.3]},
        "network_config": config,
        "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "metrics": {"test/accuracy": 0.9, "test/loss": float("nan")},
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("image-bundles")
    out = {}
    for architecture in ("small_cnn", "resnet18", "efficientnet_lite0"):
        state = make_state(architecture)
        out[architecture] = {
            "state": state,
            "path": write_image_bundle(folder / f"{architecture}.zip", **state),
        }
    return out


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(11)
    paths = []
    for i, kind in enumerate(CLASSES * 2):
        path = folder / f"{i}-{kind}.{'jpg' if i % 2 else 'png'}"
        path.write_bytes(encode(picture(kind, rng, size=40 + i), "JPEG" if i % 2 else "PNG"))
        paths.append(path)
    return paths


def reference(state: dict[str, Any], paths: list[Path]) -> pd.DataFrame:
    info = {
        "preprocessing": state["preprocessing"],
        "target": {"name": "label", "task": "image_classification", "classes": state["classes"]},
        "network": state["network_config"],
    }
    return ImagePredictor(info, state["state_dict"], image_io).predict(
        pd.DataFrame({"image": [str(p) for p in paths]})
    )


def test_layout_and_json(written) -> None:
    with zipfile.ZipFile(written["small_cnn"]["path"]) as zf:
        names = set(zf.namelist())
        info = json.loads(zf.read("artifacts/studio_model.json"))
        requirements = zf.read("requirements.txt").decode()
        readme = zf.read("README.md").decode()
    assert {
        "MLmodel",
        "training_studio_pyfunc.py",
        "artifacts/weights.pt",
        "artifacts/training_studio_runtime.py",
        "artifacts/training_studio_image_io.py",
        "artifacts/model.onnx",
    } <= names
    assert not [n for n in names if n.endswith((".pkl", ".pickle"))]
    assert "torchvision==" in requirements and "pillow" in requirements and "+" not in requirements
    assert info["kind"] == "image" and info["target"]["classes"] == ["blue", "red", "stripes"]
    assert info["preprocessing"]["size"] == SIZE and info["network"]["architecture"] == "small_cnn"
    assert info["onnx"]["inputs"] == [
        {"name": "image", "dtype": "float32", "shape": ["batch", 3, SIZE, SIZE]}
    ]
    assert info["metrics"] == {"test/accuracy": 0.9, "test/loss": None}
    assert "pd.DataFrame({'image': ['photo.jpg']})" in readme


def test_predictions_in_process_from_every_kind_of_input(written, pictures) -> None:
    state = written["small_cnn"]["state"]
    expected = reference(state, pictures)
    assert list(expected.columns) == [
        "predicted_label",
        "probability_blue",
        "probability_red",
        "probability_stripes",
    ]
    np.testing.assert_allclose(expected.filter(like="probability_").sum(axis=1), 1.0, atol=1e-6)
    with bundle.load_bundle(written["small_cnn"]["path"]) as loaded:
        assert loaded.kind == "image" and loaded.classes == ["blue", "red", "stripes"]
        as_paths = loaded.predict([str(p) for p in pictures])
        pd.testing.assert_frame_equal(as_paths, expected, atol=1e-6, check_exact=False)
        as_bytes = loaded.predict(pd.DataFrame({"bytes": [p.read_bytes() for p in pictures]}))
        pd.testing.assert_frame_equal(as_bytes, expected, atol=1e-6, check_exact=False)
        as_text = loaded.model.predict(
            {"image": [base64.b64encode(p.read_bytes()).decode() for p in pictures]}
        )
        pd.testing.assert_frame_equal(as_text, expected, atol=1e-6, check_exact=False)
        one = loaded.predict(str(pictures[0]))
        pd.testing.assert_frame_equal(one, expected.iloc[[0]], atol=1e-6, check_exact=False)
        with pytest.raises(
            BundleError, match="'nowhere.png' is neither an existing picture file nor picture bytes"
        ):
            loaded.predict(["nowhere.png"])
        checked = predict_pictures(
            loaded, [str(pictures[0]), b"not a picture", str(pictures[1])], ["a", "b", "c"]
        )
        assert list(checked["image"]) == ["a", "b", "c"]
        assert (
            checked["error"].isna().tolist() == [True, False, True] and "not a picture" in checked["error"][1]
        )
        assert checked.loc[[0, 2], "predicted_label"].tolist() == expected["predicted_label"][:2].tolist()
        assert pd.isna(checked.loc[1, "predicted_label"])


RUNNER = BLOCKER + textwrap.dedent(
    """
    import contextlib, io, json, zipfile

    import mlflow
    import pandas as pd

    job = json.load(open("job.json"))
    printed = io.StringIO()
    namespace = {}
    with contextlib.redirect_stdout(printed):
        exec(job["snippet"], namespace)
    result = {"snippet": namespace["predictions"].to_dict(orient="list")}
    for name, path in job["bundles"].items():
        zipfile.ZipFile(path).extractall(name)
        model = mlflow.pyfunc.load_model(name)
        result[name] = model.predict(pd.DataFrame({"image": job["pictures"]})).to_dict(orient="list")
        data = [open(p, "rb").read() for p in job["pictures"]]
        result[name + "_bytes"] = model.predict(pd.DataFrame({"image": data})).to_dict(orient="list")
    result["attempts"] = attempts
    result["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    json.dump(result, open("result.json", "w"))
    """
)


def test_bundle_predicts_the_same_where_studio_cannot_be_imported(written, pictures, tmp_path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "model.zip").write_bytes(written["small_cnn"]["path"].read_bytes())
    (work / "photo.jpg").write_bytes(pictures[1].read_bytes())
    job = {
        "snippet": bundle.python_snippet("model.zip", kind="image"),
        "bundles": {name: str(item["path"]) for name, item in written.items()},
        "pictures": [str(p) for p in pictures],
    }
    (work / "job.json").write_text(json.dumps(job))
    run_outside(work, RUNNER, timeout=240)
    result = json.loads((work / "result.json").read_text())
    assert result["attempts"] == [] and result["loaded"] == []
    for name, item in written.items():
        expected = reference(item["state"], pictures)
        for key in (name, name + "_bytes"):
            pd.testing.assert_frame_equal(pd.DataFrame(result[key]), expected, atol=1e-5, check_exact=False)
    snippet = pd.DataFrame(result["snippet"])
    pd.testing.assert_frame_equal(
        snippet, reference(written["small_cnn"]["state"], [pictures[1]]), atol=1e-5, check_exact=False
    )


@pytest.mark.parametrize("architecture", ["small_cnn", "resnet18", "efficientnet_lite0"])
def test_onnx_matches_torch(written, pictures, architecture) -> None:
    import onnxruntime

    state = written[architecture]["state"]
    net = build_image_net(state["network_config"])
    net.load_state_dict(state["state_dict"])
    net.eval()
    with bundle.load_bundle(written[architecture]["path"]) as loaded:
        session = onnxruntime.InferenceSession(str(loaded.onnx_path), providers=["CPUExecutionProvider"])
    info = {
        "preprocessing": state["preprocessing"],
        "target": {"classes": state["classes"]},
        "network": state["network_config"],
    }
    predictor = ImagePredictor(info, state["state_dict"], image_io)
    for batch in (1, 5):
        x = predictor.network_input(predictor.pixels([str(p) for p in pictures[:batch]]))
        with torch.no_grad():
            expected = net(x).numpy()
        np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], expected, atol=1e-4)


def test_predict_from_folders_zips_csvs_and_single_pictures(written, pictures, tmp_path) -> None:
    model = written["small_cnn"]["path"]
    expected = reference(written["small_cnn"]["state"], pictures)
    folder = pictures[0].parent
    from_folder = predict_csv(model, folder)
    assert list(from_folder["image"]) == sorted(p.name for p in pictures)
    packed = tmp_path / "new.zip"
    with zipfile.ZipFile(packed, "w") as zf:
        for path in pictures:
            zf.write(path, f"new/{path.name}")
        zf.writestr("__MACOSX/new/._0.png", b"junk")
    from_zip = predict_csv(model, packed, tmp_path / "out.csv")
    assert list(from_zip["image"]) == [f"new/{p.name}" for p in pictures]
    np.testing.assert_allclose(from_zip["probability_red"], expected["probability_red"], atol=1e-6)
    assert pd.read_csv(tmp_path / "out.csv").shape == (6, 5)
    listing = folder / "list.csv"
    pd.DataFrame({"image": [p.name for p in pictures], "note": "x"}).to_csv(listing, index=False)
    from_csv = predict_csv(model, listing)
    assert from_csv["predicted_label"].tolist() == expected["predicted_label"].tolist()
    for header in (["image"], ["path"], []):  # a plain list of paths, one column, with or without a header
        listing.write_text("\n".join([*header, *(p.name for p in pictures)]) + "\n")
        from_list = predict_csv(model, listing)
        assert list(from_list.iloc[:, 0]) == [p.name for p in pictures]
        assert from_list["predicted_label"].tolist() == expected["predicted_label"].tolist()
    single = predict_csv(model, pictures[2])
    assert single["predicted_label"].tolist() == [expected["predicted_label"][2]]
    listing.unlink()
    with pytest.raises(BundleError, match="no such file or folder"):
        predict_csv(model, tmp_path / "missing")


def test_an_image_bundle_without_its_preparation_is_refused(written, tmp_path) -> None:
    source = written["small_cnn"]["path"]
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(broken, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == bundle.INFO_MEMBER:
                info = json.loads(data)
                info["preprocessing"] = {"size": SIZE}
                data = json.dumps(info).encode()
            zout.writestr(name, data)
    with pytest.raises(BundleError, match="without its picture preparation"):
        bundle.load_bundle(broken)


def test_studio_predict_takes_a_plain_list_of_picture_paths(written, pictures, tmp_path) -> None:
    """``python -m studio predict picture_model.zip paths.csv`` in a process of its own: a one-column CSV
    of paths (absolute here) is a list of pictures, not a table that needs two columns."""
    listing = tmp_path / "paths.csv"
    listing.write_text("\n".join(str(p) for p in pictures) + "\n")
    done = run_studio("predict", written["small_cnn"]["path"], listing)
    assert done.returncode == 0, done.stderr
    rows = pd.read_csv(io.StringIO(done.stdout))
    expected = reference(written["small_cnn"]["state"], pictures)
    assert list(rows["image"]) == [str(p) for p in pictures]
    assert rows["predicted_label"].tolist() == expected["predicted_label"].tolist()
