"""'Use all my data' for text: a bag-of-words run trains k fold models and its model averages them. One
module-scoped fixture really trains a 3-fold ensemble (with idf word weights) on tiny reviews whose label
a planted word decides; then the ensemble's predictions equal the mean of its members' probabilities in
this process, in the bundle loaded where ``studio`` cannot be imported, and in its one ONNX graph. A
pretrained network with the switch is refused in one sentence before anything trains."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from studio.bundle import python_snippet
from studio.core import ensembles, runtime, text_runtime
from tests.bundle.outside import run_outside
from tests.bundle.test_bundle import RUNNER
from tests.mlflow_store import new_store
from tests.text.test_text_training import PROBE, reviews

TOLERANCE = 1e-5
FOLDS = 3


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("text-ensemble")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(tmp / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
        from studio.core.spec import RunSpec
        from studio.data import add_data_file
        from studio.engine.training import train

        reviews(300).to_csv(tmp / "reviews.csv", index=False)
        info = add_data_file(tmp / "reviews.csv")
        spec = RunSpec.from_dict(
            {
                "task": "text_classification",
                "architecture": {"name": "bag_of_words", "params": {"token_weights": True}},
                "data": {"dataset_id": info.id, "target": "label", "use_all_data": True, "folds": FOLDS},
                "training": {"epochs": 8, "batch_size": 32},
            }
        )
        bundle = tmp / "model.zip"
        result = train(spec, bundle_out=bundle)
        yield {"result": result, "bundle": bundle, "tmp": tmp, "spec": spec}


def bundle_parts(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    with zipfile.ZipFile(path) as zf:
        info = json.loads(zf.read("artifacts/studio_model.json"))
        with zf.open("artifacts/weights.pt") as file:
            weights = torch.load(file, map_location="cpu", weights_only=True)
    return info, weights


def member_probabilities(path: Path, rows: pd.DataFrame) -> list[pd.DataFrame]:
    """Each fold model's own class probabilities, through the text runtime with the bundle's shared
    preprocessing and encoder."""
    info, weights = bundle_parts(path)
    found = []
    for number in range(info["network"]["members"]):
        prefix = f"members.{number}."
        own = {key[len(prefix) :]: value for key, value in weights.items() if key.startswith(prefix)}
        alone = {**info, "network": info["network"]["member"]}
        predicted = text_runtime.TextPredictor(alone, own, {"runtime": runtime}, None).predict(rows)
        found.append(predicted.filter(like="probability_"))
    return found


def mean_of_members(path: Path, rows: pd.DataFrame) -> pd.DataFrame:
    each = member_probabilities(path, rows)
    return sum(each) / len(each)


def test_the_run_trains_three_fold_models_and_says_what_they_cost(ensemble) -> None:
    from studio import tracking
    from studio.data import get_dataset, load_profile, load_table
    from studio.modalities import modality_for

    result, spec = ensemble["result"], ensemble["spec"]
    assert result.status == "FINISHED"
    assert result.quality[ensembles.MEMBERS] == FOLDS
    assert len(ensembles.member_scores(result.quality, "test/accuracy")) == FOLDS
    assert result.test_metrics["test/accuracy"] > 0.75, result.test_metrics  # a guess: about 0.5
    said = ensembles.lines({**result.test_metrics, **result.quality})
    assert said[0].startswith("This model is an ensemble of 3 fold models; each prediction runs all 3 (≈")
    assert tracking.get_run(result.run_id).metrics[ensembles.MEMBERS] == FOLDS
    # As for tables: every fold has the same test rows and one preprocessing, the bundle's.
    dataset = get_dataset(spec.data.dataset_id)
    kind, profile = modality_for(spec.task), load_profile(dataset.id)
    folds = [kind.prepare(spec, dataset, load_table(dataset.id), profile, fold=f) for f in range(FOLDS)]
    info, weights = bundle_parts(ensemble["bundle"])
    assert all((f.data.test_idx == folds[0].data.test_idx).all() for f in folds)
    assert all(f.data.preprocessor.state == info["preprocessing"] for f in folds)
    assert all(f.encoder.state == info["text"] for f in folds)
    assert info["ensemble"]["members"] == FOLDS and info["network"]["member"]["type"] == "bag_of_words"
    idf = [weights[f"members.{n}.token_weight"] for n in range(FOLDS)]  # each its own training rows'
    assert not torch.equal(idf[0], idf[1]) and not torch.equal(idf[1], idf[2])


def test_the_ensemble_predicts_the_mean_of_its_fold_models(ensemble) -> None:
    from studio.bundle import load_bundle

    path = ensemble["bundle"]
    members = member_probabilities(path, PROBE)
    assert not np.allclose(members[0].to_numpy(), members[1].to_numpy())  # distinct models
    expected = mean_of_members(path, PROBE)
    with load_bundle(path) as loaded:
        predicted = loaded.predict(PROBE)
    np.testing.assert_allclose(predicted[expected.columns].to_numpy(), expected.to_numpy(), atol=TOLERANCE)
    classes = [c.removeprefix("probability_") for c in expected.columns]
    assert predicted["predicted_label"].tolist() == [classes[i] for i in expected.to_numpy().argmax(axis=1)]


def test_without_the_studio_the_bundle_predicts_the_mean_of_its_fold_models(ensemble, tmp_path) -> None:
    probe = tmp_path / "probe.csv"
    PROBE.to_csv(probe, index=False)
    (tmp_path / "model.zip").write_bytes(ensemble["bundle"].read_bytes())
    (tmp_path / "data.csv").write_bytes(probe.read_bytes())
    bundles = {"text": str(ensemble["bundle"])}
    job = {"snippet": python_snippet("model.zip"), "probe": str(probe), "bundles": bundles}
    (tmp_path / "job.json").write_text(json.dumps(job))
    run_outside(tmp_path, RUNNER)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["attempts"] == [] and result["loaded"] == []
    expected = mean_of_members(ensemble["bundle"], pd.read_csv(probe))
    got = pd.DataFrame(result["text"])[expected.columns]
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=TOLERANCE)


def test_the_one_onnx_graph_averages_the_fold_models(ensemble) -> None:
    import onnxruntime

    info, weights = bundle_parts(ensemble["bundle"])
    assert info["onnx"]["file"], info["onnx"]
    assert "This graph averages 3 fold models" in info["onnx"]["note"]
    with zipfile.ZipFile(ensemble["bundle"]) as zf:
        graph = zf.read("artifacts/model.onnx")
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    predictor = text_runtime.TextPredictor(info, weights, {"runtime": runtime}, None)
    assert isinstance(predictor.net, runtime.FoldEnsemble)
    x_num, x_cat = predictor.preprocessor.transform(PROBE)
    x_text, _ = predictor.encoder.encode(PROBE)
    feed = {"numeric": x_num, "categorical": x_cat, "text": x_text}
    out = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})[0]
    probabilities = np.exp(out - out.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, mean_of_members(ensemble["bundle"], PROBE), atol=TOLERANCE)


def test_the_words_of_an_ensembles_prediction_add_up_to_it(ensemble) -> None:
    from studio.modalities.text.explain import bag_of_words_contributions

    info, weights = bundle_parts(ensemble["bundle"])
    predictor = text_runtime.TextPredictor(info, weights, {"runtime": runtime}, None)
    text = "the box arrived, I love it"
    row = pd.DataFrame({"review": [text], "price": [50.0]})
    found = bag_of_words_contributions(predictor, row)
    assert found["predicted"] == "pos"
    expected = mean_of_members(ensemble["bundle"], row)["probability_pos"].iloc[0]
    assert found["prediction"] == pytest.approx(expected, abs=TOLERANCE)  # the ensemble's own probability
    (pieces,) = found["texts"].values()
    assert "".join(piece for piece, _ in pieces) == text
    shares = {piece.lower(): share for piece, share in pieces if share}
    assert sum(shares.values()) == pytest.approx(found["prediction"] - found["baseline"], abs=0.01)
    assert max(shares, key=shares.get) == "love"


def test_a_pretrained_network_with_the_switch_is_refused_in_one_sentence(ensemble, capsys) -> None:
    from studio.cli.main import main

    with pytest.MonkeyPatch.context() as patch:
        tmp = ensemble["tmp"]
        patch.setenv("STUDIO_HOME", str(tmp / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
        data = ensemble["spec"].data.dataset_id
        code = main(["train", "--data", data, "--target", "label", "--arch", "minilm_l6", "--folds", "3"])
    said = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in said, said
    assert "'Use all my data' works with the bag of words, not a pretrained network" in said
    assert "3 copies of a 22-million-weight network" in said


def test_the_train_form_offers_the_switch_for_the_bag_of_words_and_multiplies_its_time_guess(
    studio_home, tmp_path, monkeypatch
) -> None:
    from streamlit.testing.v1 import AppTest

    from studio.app import forms
    from studio.data import add_data_file

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
    reviews(200).to_csv(tmp_path / "reviews.csv", index=False)
    add_data_file(tmp_path / "reviews.csv")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=60).run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert at.selectbox(key="train_task").value == "text_classification"
    assert at.selectbox(key="train_architecture").value == "bag_of_words"
    switch = at.checkbox(key=forms.field_key("data.use_all_data", "text_classification"))
    # 200 rows read by the bag of words: it starts ticked (fold models by default up to 6,500 rows)
    assert switch.label == "Use all my data" and switch.value is True
    (how_long,) = [m.value for m in at.markdown if "**How long:**" in m.value]
    switch.uncheck().run()
    (alone,) = [m.value for m in at.markdown if "**How long:**" in m.value]
    assert "tokens each; 5 fold models, each)" in how_long and "fold models" not in alone
    assert _seconds(how_long) > 2 * _seconds(alone)  # five models, one after another (plus one startup)
    at.selectbox(key="train_architecture").set_value("minilm_l6").run()
    assert not at.exception
    keys = {c.key for c in at.checkbox}
    assert forms.field_key("data.use_all_data", "text_classification") not in keys  # not for MiniLM


def _seconds(guess: str) -> float:
    amount, unit = re.search(r"at most about ([\d.,]+) (second|minute|hour)", guess).groups()
    return float(amount.replace(",", "")) * {"second": 1, "minute": 60, "hour": 3600}[unit]
