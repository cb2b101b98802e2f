"""A tiny real search through the CLI: 3 trials of 2 epochs on the wine sample, each an ordinary job and
an MLflow child run of the search's parent run; `jobs` shows the search and its trials; the best trial's
bundle is the search's and predicts where the studio cannot be imported; the Search page (Streamlit's
AppTest) shows the finished search. The search runs once, for every test here."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path
from typing import NamedTuple

import pytest
from streamlit.testing.v1 import AppTest

from tests.bundle.outside import run_outside
from tests.mlflow_store import new_store
from tests.processes import stop_everything_under
from tests.studio_cli import run_studio

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


class CliSearch(NamedTuple):
    home: Path
    done: subprocess.CompletedProcess


def studio(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return run_studio(*args, timeout=timeout)


@pytest.fixture(scope="module")
def cli_search(tmp_path_factory: pytest.TempPathFactory):
    """The search, run once through the CLI in a studio home of its own (CPU slots only), its processes
    stopped afterwards."""
    tmp = tmp_path_factory.mktemp("search")
    home = tmp / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp}/mlruns"))
        patch.setenv("CUDA_VISIBLE_DEVICES", "")
        patch.delenv("STUDIO_CPU_SLOTS", raising=False)
        patch.delenv("STUDIO_SEARCH_STORAGE", raising=False)
        try:
            # validation shares of 30% leave room for 2 cross-validation folds (the default 15% gives 5):
            # the same search, at 2/5 of its trainings
            done = studio(
                "search", "--data", "sample:wine", "--trials", "3", "--epochs", "2",
                "--set", "data.val_fraction=0.3",
            )  # fmt: skip
            yield CliSearch(home, done)
        finally:
            stop_everything_under(home)


def test_tiny_search_through_the_cli(cli_search: CliSearch, tmp_path: Path) -> None:
    from studio import tracking
    from studio.jobs.store import search_jobs
    from studio.search.records import list_searches

    done = cli_search.done
    assert done.returncode == 0, done.stdout + done.stderr
    (search,) = list_searches()
    assert search.state == "finished" and search.reason == "All 3 trials have run."
    assert f"{search.id}: Search · wine" in done.stdout
    trials = search_jobs(search.id)
    assert [job.trial_number for job in trials] == [0, 1, 2]
    assert all(job.state == "succeeded" and job.trial_state == "complete" for job in trials)
    assert all(job.spec.training.epochs == 2 for job in trials)
    assert len(done.stdout.split("\ntrial ")) == 4  # one line per trial

    # MLflow: a finished parent run and three child runs pointing at it, each with its trial number
    client = tracking.client()
    parent = client.get_run(search.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["studio.kind"] == "search"
    assert parent.data.tags["studio.best_job_id"] == search.best_job_id
    assert "test/accuracy" in parent.data.metrics and "search/best_value" in parent.data.metrics
    children = client.search_runs(
        [search.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{search.parent_run_id}'"
    )
    assert sorted(run.info.run_id for run in children) == sorted(job.mlflow_run_id for job in trials)
    assert {run.data.tags["studio.trial_number"] for run in children} == {"0", "1", "2"}
    assert {run.data.tags["studio.trial_state"] for run in children} == {"complete"}
    assert all(run.info.status == "FINISHED" for run in children)

    # the test rows are used once: only the chosen trial has test scores (run, job, bundle, parent)
    tested = {run.info.run_id for run in children if any(k.startswith("test/") for k in run.data.metrics)}
    chosen = next(job for job in search_jobs(search.id) if job.id == search.best_job_id)
    assert tested == {chosen.mlflow_run_id}
    assert [job.id for job in search_jobs(search.id) if job.test_metrics] == [chosen.id]
    assert parent.data.metrics["test/accuracy"] == chosen.test_metrics["test/accuracy"]
    with zipfile.ZipFile(chosen.bundle_path) as zf:
        info = json.loads(zf.read("artifacts/studio_model.json"))
    assert info["metrics"]["test/accuracy"] == chosen.test_metrics["test/accuracy"]
    assert "its test scores (the test rows were not used to choose it)" in done.stdout
    # the chosen model against a trivial guess on the same test rows: scored once, with its test
    assert {"baseline/test_accuracy", "baseline/test_rows"} <= set(chosen.quality)
    assert chosen.quality["kept/epoch"] >= 1  # the trial's kept epoch, kept through the test
    assert "against a guess: " in done.stdout and " than a guess: " in done.stdout
    assert not [job for job in trials if job.id != chosen.id and "baseline/test_rows" in job.quality]

    # selection on validation: the best trial has the best reported validation score, here (178 rows)
    # the mean over 2 cross-validation folds, fold 0 being the trial's own run
    # and a higher one is taken only when it beats your settings (trial 0) by more than chance on the
    # same folds (at 5% shared among the trials scored)
    best = next(job for job in trials if job.id == search.best_job_id)
    from studio.search.driver import beats_beyond_chance
    from studio.search.study import load_study

    folds = {t.number: t.user_attrs["cv_scores"] for t in load_study(search.id).trials}
    values = _kept_values(search.id)
    tried = len(folds) - 1  # the 5% is shared among the trials besides yours
    eligible = [n for n in values if n == 0 or beats_beyond_chance(folds[n], folds[0], "max", tried)]
    assert search.best_value == max(values[n] for n in eligible)

    for trial in load_study(search.id).trials:
        scores = trial.user_attrs["cv_scores"]
        assert len(scores) == 2 and all(0 <= score <= 1 for score in scores)
        assert scores[0] == trial.intermediate_values[max(trial.intermediate_values)]
        assert trial.value == trial.user_attrs["cv_value"] == sum(scores) / 2
        run = next(r for r in children if r.data.tags["studio.trial_number"] == str(trial.number))
        history = client.get_metric_history(run.info.run_id, "cv/accuracy")
        assert [(m.step, m.value) for m in history] == list(enumerate(scores))
    assert f"chosen: trial {best.trial_number} ({best.id})" in done.stdout

    # `jobs` shows the search and its trials
    listing = studio("jobs", "list")
    assert listing.returncode == 0 and search.id in listing.stdout and "3 trials" in listing.stdout
    shown = studio("jobs", "show", search.id)
    assert shown.returncode == 0, shown.stderr
    assert all(job.id in shown.stdout for job in trials)
    as_json = json.loads(studio("jobs", "show", search.id, "--json").stdout)
    assert [t["number"] for t in as_json["trials"]] == [0, 1, 2]

    # the best trial's bundle predicts where the studio cannot be imported
    work = tmp_path / "elsewhere"
    work.mkdir()
    zipfile.ZipFile(best.bundle_path).extractall(work / "model")
    from studio.data import load_table, resolve_dataset

    load_table(resolve_dataset("sample:wine").id).drop(columns=["target"]).head(5).to_csv(
        work / "rows.csv", index=False
    )
    code = (
        "import sys, mlflow.pyfunc, pandas as pd\n"
        "model = mlflow.pyfunc.load_model('model')\n"
        "print(len(model.predict(pd.read_csv('rows.csv'))))\n"
        "assert not any(m.split('.')[0] == 'studio' for m in sys.modules)\n"
    )
    assert run_outside(work, code).strip() == "5"


def test_the_search_page_shows_the_finished_search(cli_search: CliSearch) -> None:
    from studio.search.records import list_searches

    assert cli_search.done.returncode == 0, cli_search.done.stdout + cli_search.done.stderr
    (search,) = list_searches()
    page = AppTest.from_file(APP, default_timeout=60).run()
    page.query_params["search"] = search.id
    page.switch_page("pages/search.py").run()
    assert not page.exception, [e.value for e in page.exception]
    assert [t.value for t in page.title] == ["Search"]
    text = " ".join(m.value for m in page.markdown)
    assert "Finished · 3 trials (3 finished)" in text
    # the best score's trial, or your settings when a higher score did not beat them beyond chance
    assert "validation accuracy, averaged over 2 cross-validation folds (higher is better)" in text
    assert any(
        words in text for words in ("has the best validation accuracy", "by more than chance", "Nothing beat")
    )
    assert "Its test score" in text
    captions = " ".join(c.value for c in page.caption)
    assert "they train without touching the test rows" in captions
    assert "each trial is scored on 2 different blocks of validation rows" in captions
    table = page.dataframe[0].value
    assert list(table["Trial"]) == [0, 1, 2] and "(chosen)" in " ".join(table["State"])
    assert [b.key for b in page.button] == ["search_more"]  # a finished search can be given more time


def _kept_values(search_id: str) -> dict[int, float]:
    from studio.search.study import load_study

    study = load_study(search_id)
    return {t.number: t.value for t in study.trials if t.value is not None}
