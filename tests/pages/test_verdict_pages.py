"""A model no better than a guess is called so on every page that shows its scores.

Two real tiny runs, trained once for the module by the worker's own code: one on a table whose inputs
are pure noise (five classes: it can only learn the class shares), one on a table whose class is one
input's sign. The run page, the Runs list, Compare, ``jobs show`` and ``studio train`` must say the
first is no better than a guess, name the epoch each run kept, and not warn about the second."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio import jobs
from studio.core import quality
from studio.core.spec import RunSpec
from tests.mlflow_store import new_store
from tests.pages.test_runs_page import run_in_process

ROOT = Path(__file__).resolve().parents[2]
RUNS = str(ROOT / "pages" / "runs.py")
COMPARE = str(ROOT / "pages" / "compare.py")


def write_table(path: Path, signal: bool, rows: int = 400) -> Path:
    rng = random.Random(7)
    lines = ["n1,n2,n3,label"]
    for _ in range(rows):
        values = [rng.gauss(0, 1) for _ in range(3)]
        label = ("pos" if values[0] > 0 else "neg") if signal else rng.choice("abcde")
        lines.append(",".join(f"{v:.4f}" for v in values) + f",{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def spec(dataset_id: str, name: str, epochs: int) -> RunSpec:
    return RunSpec.from_dict(
        {
            "name": name,
            "task": "classification",
            "data": {"dataset_id": dataset_id, "target": "label"},
            "training": {"epochs": epochs, "batch_size": 32},
            "optimizer": {"learning_rate": 0.01},
            "early_stopping": {"enabled": False},
        }
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """(noise run, signal run), both finished, in one studio home shared by this module's tests."""
    from studio.data import add_csv

    root = tmp_path_factory.mktemp("verdict")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(root / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{root}/mlruns"))
        patch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
        noise_id = add_csv(write_table(root / "noise.csv", signal=False)).id
        signal_id = add_csv(write_table(root / "signal.csv", signal=True)).id
        noise = run_in_process(spec(noise_id, "noise inputs", epochs=8))
        signal = run_in_process(spec(signal_id, "a real signal", epochs=8))
        assert noise.state == signal.state == jobs.SUCCEEDED, (noise.reason, signal.reason)
        yield noise, signal
        jobs.stop_scheduler(timeout=5)


def run_page(job_id: str) -> AppTest:
    at = AppTest.from_file(RUNS, default_timeout=60)
    at.query_params["job"] = job_id
    return at.run()


def test_the_guess_is_scored_on_the_same_test_rows(runs) -> None:
    from studio import tracking

    noise, signal = runs
    for job in runs:
        logged = tracking.get_run(job.mlflow_run_id)
        rows = job.quality[quality.TEST_ROWS]
        assert rows == ast.literal_eval(logged.tags[tracking.TAG_ROWS])["test"]  # the run's own test rows
        guess = job.quality["baseline/test_accuracy"]
        assert 0 < guess < 1 and (guess * rows) == pytest.approx(round(guess * rows))  # a count of rows
        assert logged.metrics["baseline/test_accuracy"] == pytest.approx(guess)
        assert logged.metrics[quality.KEPT_EPOCH] == job.quality[quality.KEPT_EPOCH]
    assert tracking.get_run(noise.mlflow_run_id).tags[tracking.TAG_VERDICT] == "No better than a guess"
    assert tracking.get_run(signal.mlflow_run_id).tags[tracking.TAG_VERDICT] == "Better than a guess"
    assert quality.verdict(noise.outcome).level == quality.GUESS
    assert quality.verdict(signal.outcome).level == quality.BETTER


def test_run_page_says_no_better_than_a_guess_and_names_the_kept_epoch(runs) -> None:
    noise, _ = runs
    at = run_page(noise.id)

    assert not at.exception
    assert not at.success  # not "Training finished. Check the test scores below …"
    top = at.warning[0].value
    assert top.startswith("Training finished, but the model is no better than a guess:")
    accuracy = f"{noise.test_metrics['test/accuracy']:.1%}"
    guess = f"{noise.quality['baseline/test_accuracy']:.1%}"
    assert f"{accuracy} accuracy against {guess} for always answering the most common class" in top
    assert f"on the same {int(noise.quality[quality.TEST_ROWS])} rows" in top
    assert any(e.value.startswith("No better than a guess:") for e in at.error)
    kept = int(noise.quality[quality.KEPT_EPOCH])
    captions = [c.value for c in at.caption]
    assert any(c.startswith(f"Kept epoch {kept} of 8") for c in captions), captions
    helps = {m.label: m.proto.help for m in at.metric}
    assert "always the most common class" in helps["Accuracy"] and guess in helps["Accuracy"]
    assert "rare classes count as much" in helps["F1 score (macro)"]


def test_run_page_of_a_real_model_finishes_plainly(runs) -> None:
    _, signal = runs
    at = run_page(signal.id)

    assert not at.exception and not at.error
    assert at.success[0].value.startswith("Training finished. Check the test scores below")
    assert any("Better than a guess:" in m.value for m in at.markdown)
    assert any(c.value.startswith("Kept epoch ") for c in at.caption)


def test_runs_list_marks_the_guess(runs) -> None:
    noise, signal = runs
    at = AppTest.from_file(RUNS, default_timeout=60).run()

    assert not at.exception
    rows = {
        name: next(m.value for m in at.markdown if f"**{name}**" in m.value)
        for name in ("noise inputs", "a real signal")
    }
    assert "No better than a guess" in rows["noise inputs"]
    assert "guess" not in rows["a real signal"]


def test_compare_says_which_runs_are_no_better_than_a_guess(runs) -> None:
    from studio import tracking
    from studio.app import runs_view as rv

    noise, signal = runs
    for job, expected in ((noise, "No better than a guess"), (signal, "Better than a guess")):
        at = AppTest.from_file(COMPARE, default_timeout=60).run()
        at.selectbox(key="compare-dataset").set_value(job.dataset_id).run()

        assert not at.exception
        table = at.dataframe[0].value
        assert list(table["Against a guess"]) == [expected]
        helps = rv.compare_table([tracking.get_run(job.mlflow_run_id)]).column_help()
        assert "rare classes count as much" in helps["Test F1 score (macro)"]
        assert "0.5 (no better than a coin)" in helps["Test AUROC"]
        warned = [w.value for w in at.warning]
        if expected.startswith("No better"):
            assert any(w.startswith("**noise inputs**: No better than a guess:") for w in warned), warned
        else:
            assert not any("guess" in w for w in warned), warned


def test_jobs_show_prints_the_verdict_and_the_kept_epoch(runs, capsys: pytest.CaptureFixture) -> None:
    from studio.cli.main import main

    noise, signal = runs
    assert main(["jobs", "show", noise.id]) == 0
    out = capsys.readouterr().out
    verdict_line = next(line for line in out.splitlines() if line.startswith("verdict"))
    assert "No better than a guess:" in verdict_line
    assert f"{int(noise.quality[quality.TEST_ROWS])} rows" in verdict_line
    kept = int(noise.quality[quality.KEPT_EPOCH])
    assert any(
        line.startswith("epoch kept") and f"Kept epoch {kept} of 8" in line for line in out.splitlines()
    )
    assert "baseline/test_accuracy=" in out

    assert main(["jobs", "show", signal.id]) == 0
    assert "Better than a guess:" in capsys.readouterr().out


def test_run_page_names_a_kept_early_epoch_and_a_wide_validation_test_gap(studio_home: Path) -> None:
    """The issue's two cases, as a finished job records them: a 1,000-epoch run without early stopping
    that kept epoch 8, and validation 0.775 against test 0.618 on a picture set."""
    from studio.jobs import store

    run_spec = RunSpec.from_dict(
        {
            "name": "long run",
            "task": "classification",
            "data": {"dataset_id": "some-data", "target": "label"},
            "training": {"epochs": 1000},
            "early_stopping": {"enabled": False},
        }
    )
    job = store.insert_job(run_spec)
    assert store.claim_job(job.id, "cpu:0")
    store.finish_job(
        job.id,
        jobs.SUCCEEDED,
        test_metrics={"test/accuracy": 0.618, "test/loss": 1.1},
        quality={
            "baseline/test_accuracy": 0.2,
            quality.TEST_ROWS: 120,
            quality.KEPT_EPOCH: 8,
            quality.EPOCHS_RUN: 1000,
            "kept/val_accuracy": 0.775,
            quality.VAL_ROWS: 120,
        },
    )

    at = run_page(job.id)

    assert not at.exception
    captions = [c.value for c in at.caption]
    assert (
        "Kept epoch 8 of 1,000: it had the best validation loss, and none of the 992 epochs after it improved on it; the model you download is epoch 8's."
        in captions
    )
    assert "trained on the processor (CPU)" in " ".join(captions)
    gap = [w.value for w in at.warning if w.value.startswith("The validation and test scores differ widely")]
    assert gap and "77.5% on the validation rows against 61.8% on the test rows" in gap[0]
