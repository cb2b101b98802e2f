"""Table explanations on a really trained tiny model: permutation importance on the test split (a
planted informative column first, a noise column last) and integrated gradients for one row (the
contributions add up to the prediction minus the baseline), both run as jobs by the real worker."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from studio import jobs
from studio.core.spec import RunSpec
from studio.jobs import store, worker
from studio.modalities.analysis import importance_sentence
from tests.mlflow_store import new_store

FEATURES = ["signal", "helper", "colour", "noise"]


def planted_table(n: int = 600, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    helper = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    score = 3 * signal + 0.8 * helper + 0.5 * (colour == "red")
    return pd.DataFrame(
        {
            "signal": signal.round(4),
            "helper": helper.round(4),
            "colour": colour,
            "noise": rng.permutation(rng.normal(size=n)).round(4),
            "label": np.where(score > 0, "yes", "no"),
            "amount": (10 * score + 50 + rng.normal(scale=0.3, size=n)).round(3),
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One classification and one regression job, each trained once by the real worker (in-process)."""
    from studio.data import add_csv

    tmp = tmp_path_factory.mktemp("explain")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDIO_HOME", str(tmp / "home"))
        mp.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
        csv = tmp / "planted.csv"
        planted_table().to_csv(csv, index=False)
        dataset = add_csv(csv, name="planted")
        made = {}
        for task, target in (("classification", "label"), ("regression", "amount")):
            spec = RunSpec.from_dict(
                {
                    "name": f"planted-{task}",
                    "task": task,
                    "data": {"dataset_id": dataset.id, "target": target, "features": FEATURES},
                    "training": {"epochs": 25, "batch_size": 32, "device": "cpu"},
                    "early_stopping": {"enabled": False},
                }
            )
            job = jobs.submit_job(spec, start_scheduler=False)
            assert worker.run_job(job.id) == 0, jobs.get_job(job.id).reason
            made[task] = jobs.get_job(job.id)
        yield made


def run_action(parent, action: str, options: dict | None = None):
    job = store.insert_action_job(parent, action, options)
    started = time.monotonic()
    code = worker.run_job(job.id)
    done = jobs.get_job(job.id)
    assert code == 0, done.reason
    assert done.state == jobs.SUCCEEDED
    return done, jobs.read_action_result(done), time.monotonic() - started


def test_permutation_importance_ranks_the_planted_column_first_and_noise_last(trained):
    parent = trained["classification"]
    done, result, seconds = run_action(parent, "explain")
    print(f"explain job on {result['rows']} test rows x {result['repeats']} repeats: {seconds:.1f} s")
    ranked = [c["column"] for c in result["columns"]]
    assert set(ranked) == {"signal", "helper", "colour", "noise"}  # the raw columns, not encoded parts
    assert ranked[0] == "signal"
    assert result["columns"][0]["mean"] > 0.2  # shuffling it costs a lot of accuracy
    noise = next(c for c in result["columns"] if c["column"] == "noise")
    assert abs(noise["mean"]) <= 0.03 and ranked.index("noise") >= 2
    assert len(noise["drops"]) == result["repeats"] and noise["std"] >= 0
    assert result["sentence"].startswith("signal")
    assert done.parent_id == parent.id and done.action == "explain"
    # logged to the run in MLflow: the result file and one metric per column
    from studio import tracking

    run = tracking.client().get_run(parent.mlflow_run_id)
    assert run.data.metrics["importance/signal"] == pytest.approx(result["columns"][0]["mean"])
    logged = [a.path for a in tracking.client().list_artifacts(parent.mlflow_run_id, "explain")]
    assert "explain/result.json" in logged
    # an action job is not a run of its own: the Runs list shows training jobs only
    assert done.id not in {j.id for j in jobs.list_jobs()}
    assert done.id in {j.id for j in jobs.list_jobs(actions=True)}


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_integrated_gradients_add_up_to_prediction_minus_baseline(trained, task):
    parent = trained[task]
    row = {"signal": 1.2, "helper": -0.4, "colour": "red", "noise": 0.1}
    _, result, _ = run_action(parent, "explain_row", {"row": row})
    contributions = result["contributions"]
    assert set(contributions) == {"signal", "helper", "colour", "noise"}
    total = sum(contributions.values())
    gap = result["prediction"] - result["baseline"]
    scale = 1.0 if task == "classification" else 10.0
    assert total == pytest.approx(gap, abs=0.01 * scale)
    assert abs(result["delta"]) < 0.01 * scale
    assert max(contributions, key=lambda c: abs(contributions[c])) == "signal"
    # the same prediction the bundle makes for that row
    from studio.bundle.reader import load_bundle

    with load_bundle(parent.bundle_path) as bundle:
        predicted = bundle.predict(pd.DataFrame([row]))
    if task == "classification":
        assert result["predicted"] == predicted["predicted_label"].iloc[0]
        assert result["prediction"] == pytest.approx(predicted[f"probability_{result['predicted']}"].iloc[0], abs=1e-4)
    else:
        assert result["prediction"] == pytest.approx(predicted["predicted_amount"].iloc[0], rel=1e-4)


def test_an_explain_job_can_be_cancelled_before_it_starts(trained):
    job = store.insert_action_job(trained["classification"], "explain")
    again = store.insert_action_job(trained["classification"], "explain")
    assert again.id == job.id  # a double click queues one job
    jobs.cancel_job(job.id)
    assert worker.run_job(job.id) == 1
    assert jobs.get_job(job.id).state == jobs.CANCELLED


def test_importance_sentence_in_plain_words():
    said = importance_sentence([("body mass", 0.3), ("flipper length", 0.2), ("island", 0.001)])
    assert said == "body mass and flipper length drive most predictions; island hardly matters."
    assert "No column matters" in importance_sentence([("a", 0.0), ("b", -0.01)])


def test_a_small_version_is_made_measured_and_its_bundle_loads_without_the_studio(trained, tmp_path):
    from studio import tracking
    from studio.bundle import read_bundle_info
    from studio.modalities.analysis import bundle_predictor
    from studio.modalities.tabular.explain import truth_of
    from tests.bundle.outside import predict_outside

    parent = trained["classification"]
    done, result, _ = run_action(parent, "compress", {"tolerance": 0.01})
    assert result["size_ratio"] > 1.5 and result["file"] == "model-int8.onnx" and not result["refused"]
    assert result["score_loss"] <= 0.01 and result["metric"] == "accuracy"
    assert result["original"]["score"] == pytest.approx(parent.test_metrics["test/accuracy"], abs=1e-6)
    small_zip = store.job_dir(done.id) / result["bundle"]
    info = read_bundle_info(small_zip)
    assert info["small_version"]["run_id"] == parent.mlflow_run_id
    assert info["small_version"]["small"] == result["small"] and info["kind"] == "tabular"
    assert info["predictor"]["class"] == "OnnxTabularPredictor" and "int8" in info["small_version"]["method"]
    # the small bundle, in a process where the studio cannot be imported, predicts the raw test rows
    # and scores what the job reported
    bundle, predictor = bundle_predictor(parent.bundle_path)
    with bundle:
        rows, truth = truth_of(_test_split(parent), predictor.target)
        classes = predictor.target["classes"]
    predicted = predict_outside(small_zip, rows, tmp_path / "outside")
    accuracy = float((predicted["predicted_label"].to_numpy() == np.array(classes)[truth]).mean())
    assert accuracy == pytest.approx(result["small"]["score"], abs=1e-9)
    assert zipfile_size(small_zip) < zipfile_size(parent.bundle_path)
    logged = [a.path for a in tracking.client().list_artifacts(parent.mlflow_run_id, "compress")]
    assert {"compress/model-int8.onnx", "compress/model-int8.zip"} <= set(logged)


def zipfile_size(path) -> int:
    import zipfile

    with zipfile.ZipFile(path) as zf:
        return sum(m.file_size for m in zf.infolist())


def _test_split(parent):
    from studio.data import get_dataset, load_profile, load_table
    from studio.modalities import modality_for

    dataset = get_dataset(parent.dataset_id)
    prepared = modality_for(parent.spec.task).prepare(
        parent.spec, dataset, load_table(dataset.id), load_profile(dataset.id)
    )
    return prepared.data.frame.iloc[prepared.data.test_idx]


def test_a_small_version_losing_more_than_allowed_is_refused_with_its_numbers(trained):
    parent = trained["regression"]
    job = store.insert_action_job(parent, "compress", {"tolerance": -1.0})  # any loss at all is too much
    assert worker.run_job(job.id) == 1
    done = jobs.get_job(job.id)
    assert done.state == jobs.FAILED
    assert done.reason.startswith("The small version was refused: it loses") and "R²" in done.reason
    assert "smaller" in done.reason and "faster" in done.reason  # the measured numbers, in the sentence
    result = jobs.read_action_result(done)
    assert result["refused"] and result["file"] is None
    assert not (store.job_dir(done.id) / "model-int8.onnx").exists()


def onnx_weights(path, ops=("Conv", "Gemm", "MatMul", "MatMulInteger", "DequantizeLinear")) -> list:
    """The weights (initialisers of 2 or more axes) that feed convolutions and fully connected layers."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    feeding = {name for node in model.graph.node if node.op_type in ops for name in node.input}
    return [a for name, a in initializers.items() if name in feeding and a.ndim >= 2]


def test_pruning_zeroes_the_asked_share_of_weights_and_the_bundle_still_predicts(trained, tmp_path):
    import zipfile

    from studio.bundle import load_bundle

    parent = trained["classification"]
    done, result, _ = run_action(parent, "compress", {"tolerance": 1.0, "prune": 0.5})
    assert result["pruning"]["fraction"] == 0.5
    assert result["pruning"]["sparsity"] == pytest.approx(0.5, abs=0.002)
    assert "50% of the weights zeroed" in result["method"] and "weights zeroed" in result["sentence"]
    small_zip = store.job_dir(done.id) / result["bundle"]
    with zipfile.ZipFile(small_zip) as zf:
        zf.extract("artifacts/model.onnx", tmp_path)
    weights = onnx_weights(tmp_path / "artifacts" / "model.onnx")
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)
    assert zeros >= 0.5  # 8-bit rounding may zero a few more, never fewer (int8 weights are symmetric)
    with load_bundle(small_zip) as small:
        rows = _test_split(parent)
        predicted = small.predict(rows)
        assert small.info["small_version"]["pruning"]["sparsity"] == result["pruning"]["sparsity"]
    accuracy = float((predicted["predicted_label"].to_numpy() == rows["label"].astype(str).to_numpy()).mean())
    assert accuracy == pytest.approx(result["small"]["score"], abs=1e-9)
    with load_bundle(parent.bundle_path) as bundle:
        original = onnx_weights(bundle.onnx_path)
    assert sum(int((w == 0).sum()) for w in original) / sum(w.size for w in original) < 0.01
