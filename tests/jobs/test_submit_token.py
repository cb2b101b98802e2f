"""One press of a page's Train button, one job: the job store keeps each submission's token and never
makes two jobs for one token (a double click, a resent request, two processes at once)."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from studio import jobs
from studio.jobs import store
from tests.jobs.jobhelpers import fake_spec


def test_the_same_token_returns_the_job_it_made(jobs_home: Path) -> None:
    first = jobs.submit_job(fake_spec("pressed"), token="press-1", start_scheduler=False)
    again = jobs.submit_job(fake_spec("pressed"), token="press-1", start_scheduler=False)
    other = jobs.submit_job(fake_spec("pressed"), token="press-2", start_scheduler=False)
    untokened = [jobs.submit_job(fake_spec("cli"), start_scheduler=False) for _ in range(2)]
    assert again.id == first.id and first.submit_token == "press-1"
    assert other.id != first.id
    assert len({job.id for job in untokened}) == 2 and untokened[0].submit_token is None
    assert len(jobs.list_jobs()) == 4


def test_presses_arriving_at_once_make_one_job(jobs_home: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        made = list(
            pool.map(lambda _: store.insert_job(fake_spec("racing"), token="press-at-once"), range(8))
        )
    assert len({job.id for job in made}) == 1 and len(jobs.list_jobs()) == 1


def test_a_store_made_before_tokens_gets_the_column_when_opened(jobs_home: Path) -> None:
    old_schema = store._SCHEMA.replace(",\n    submit_token TEXT", "")
    assert "submit_token" not in old_schema
    with sqlite3.connect(jobs_home / "studio.db") as conn:
        conn.executescript(old_schema)
    store._ready.discard(store.db_path())
    job = jobs.submit_job(fake_spec("after the update"), token="press-3", start_scheduler=False)
    assert jobs.submit_job(fake_spec("again"), token="press-3", start_scheduler=False).id == job.id
