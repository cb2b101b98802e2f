"""Per-word contributions of text models (integrated gradients on the word embeddings), run as jobs:
a bag of words really trained on reviews with planted keywords credits the keyword; the pieces rebuild
the text as typed; the contributions add up to the prediction minus the empty text's."""

from __future__ import annotations

import html
import re
import signal

import pytest

from studio import jobs
from studio.core.spec import RunSpec
from studio.jobs import worker
from tests.mlflow_store import new_store
from tests.text.test_text_training import reviews


def trained_job(tmp, architecture: dict | None = None, rows: int = 400, epochs: int = 10) -> jobs.Job:
    from studio.data import add_data_file

    reviews(rows, seed=3).to_csv(tmp / "reviews.csv", index=False)
    info = add_data_file(tmp / "reviews.csv")
    spec = RunSpec.from_dict(
        {
            "name": "reviews",
            "task": "text_classification",
            "data": {"dataset_id": info.id, "target": "label"},
            "training": {"epochs": epochs, "batch_size": 32, "device": "cpu"},
            **({"architecture": architecture, "optimizer": {"learning_rate": 0.01}} if architecture else {}),
        }
    )
    job = jobs.submit_job(spec, start_scheduler=False)
    run(job.id)
    return jobs.get_job(job.id)


def run(job_id: str) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert worker.run_job(job_id) == 0, jobs.get_job(job_id).reason
    finally:
        signal.signal(signal.SIGTERM, previous)


def explain(parent: jobs.Job, row: dict) -> dict:
    action = jobs.submit_action(parent, "explain_row", {"row": row}, start_scheduler=False)
    run(action.id)
    return jobs.read_action_result(jobs.get_job(action.id))


@pytest.fixture(scope="module")
def bag_of_words(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text-explain")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDIO_HOME", str(tmp / "home"))
        mp.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
        yield trained_job(tmp)


TEXT = "The box arrived, <b>I love it</b> **now** [x](y)"


def check(result: dict, text: str, tolerance: float) -> dict[str, float]:
    (pieces,) = result["texts"].values()
    assert "".join(piece for piece, _ in pieces) == text  # the text as typed, cut into pieces
    total = sum(share for _, share in pieces)
    assert total == pytest.approx(result["prediction"] - result["baseline"], abs=tolerance)
    return {piece.lower(): share for piece, share in pieces if share}


def test_the_bag_of_words_credits_the_planted_keyword(bag_of_words):
    assert bag_of_words.test_metrics["test/accuracy"] > 0.8
    result = explain(bag_of_words, {"review": TEXT, "price": 50.0})
    assert result["predicted"] == "pos" and result["explains"] == "probability of pos"
    shares = check(result, TEXT, 0.01)
    assert max(shares, key=shares.get) == "love"
    assert "'love'" in result["sentence"]
    bad = explain(bag_of_words, {"review": "the screen arrived broken", "price": 50.0})
    assert bad["predicted"] == "neg"
    shares = check(bad, "the screen arrived broken", 0.01)
    assert max(shares, key=shares.get) == "broken"


@pytest.mark.slow
def test_minilm_words_add_up_to_the_prediction(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp_path}/mlruns"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    parent = trained_job(
        tmp_path, {"name": "minilm_l6", "params": {"max_length": 24, "frozen_layers": -1}}, rows=120, epochs=3
    )
    result = explain(parent, {"review": TEXT, "price": 50.0})
    check(result, TEXT, 0.05)
    assert abs(result["delta"]) < 0.05


def test_the_predict_page_colours_the_typed_words_and_shows_markup_as_text(bag_of_words, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(jobs, "ensure_scheduler", lambda *a, **k: None)  # the test runs the job itself
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "pages" / "predict.py"), default_timeout=60)
    at.query_params["job"] = bag_of_words.id
    at.run()
    at.text_area(key="predict-text-review").set_value("<img src=x onerror=alert(1)> I love it").run()
    at.toggle(key="predict-text-why").set_value(True).run()
    assert not at.exception
    queued = jobs.latest_action(bag_of_words.id, "explain_row")
    assert queued.state == jobs.QUEUED and queued.options["row"] == {"review": "<img src=x onerror=alert(1)> I love it"}
    run(queued.id)
    at.run()
    assert not at.exception
    (shown,) = at.get("html")
    body = shown.proto.body
    assert "<img" not in body and "&lt;" in body  # the typed markup is escaped: shown, never run
    visible = html.unescape(re.sub(r"<[^>]+>", "", body))  # what the reader sees: the text as typed
    assert visible == "<img src=x onerror=alert(1)> I love it"
    assert '<span style="background:rgba(84, 162, 75' in body and ">love</span>" in body


def test_the_run_page_colours_the_words_of_its_worst_mistakes(bag_of_words, monkeypatch):
    """The mistakes list's switch makes an explain job; each worst mistake then shows its text, escaped,
    with the words coloured toward the (wrong) answer the model gave."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from studio.app.text_view import mistakes_frame, text_mistakes

    monkeypatch.setattr(jobs, "ensure_scheduler", lambda *a, **k: None)  # the test runs the job itself
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "pages" / "runs.py"), default_timeout=60)
    at.query_params["job"] = bag_of_words.id
    at.run()
    at.toggle(key="mistake-words-on").set_value(True).run()
    at.button(key="explain-model").click().run()
    assert not at.exception
    queued = jobs.latest_action(bag_of_words.id, "explain")
    assert queued.state == jobs.QUEUED
    run(queued.id)
    at.run()
    assert not at.exception
    result = jobs.read_action_result(jobs.get_job(queued.id))
    listed = mistakes_frame(text_mistakes(bag_of_words.mlflow_run_id))
    assert 0 < len(result["rows"]) == min(10, len(listed))
    # the same mistakes as the list above, in the same order, each explained toward what the model said
    for row, (_, shown) in zip(result["rows"], listed.iterrows(), strict=False):
        assert "".join(piece for piece, _ in row["texts"]["review"]) == shown["review"]
        assert (row["label"], row["predicted"]) == (shown["True answer"], shown["Model said"])
    bodies = [h.proto.body for h in at.get("html")]
    assert len(bodies) == len(result["rows"]) and all('<span style="background:rgba(' in b for b in bodies)
    assert any("True answer:" in m.value for m in at.markdown)


def test_a_small_text_version_is_a_bundle_that_loads_without_the_studio(bag_of_words, tmp_path):
    """Dynamic int8 of the bag of words: the small bundle, in a process where the studio cannot be
    imported, predicts the raw test rows (texts and prices) and scores the accuracy the job reported."""
    from studio.bundle import read_bundle_info
    from studio.data import get_dataset, load_profile, load_table
    from studio.modalities import modality_for
    from tests.bundle.outside import predict_outside

    action = jobs.submit_action(bag_of_words, "compress", {"tolerance": 0.05}, start_scheduler=False)
    run(action.id)
    result = jobs.read_action_result(jobs.get_job(action.id))
    assert result["unit"] == "row" and result["size_ratio"] > 2 and not result["refused"]
    small_zip = jobs.store.job_dir(action.id) / result["bundle"]
    info = read_bundle_info(small_zip)
    assert info["predictor"] == {"module": "text_runtime", "class": "OnnxTextPredictor"}
    dataset = get_dataset(bag_of_words.dataset_id)
    spec = bag_of_words.spec
    data = modality_for(spec.task).prepare(spec, dataset, load_table(dataset.id), load_profile(dataset.id)).data
    rows = data.frame.iloc[data.test_idx][["review", "price", "label"]]
    predicted = predict_outside(small_zip, rows.drop(columns=["label"]), tmp_path / "outside")
    accuracy = float((predicted["predicted_label"].to_numpy() == rows["label"].to_numpy()).mean())
    assert accuracy == pytest.approx(result["small"]["score"], abs=1e-9)
