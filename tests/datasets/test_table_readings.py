"""How the profile reads a table's columns, on named examples: dates written in the common text forms (and
what is not a date), money and counts on a log scale, categories with many values; and the words the Data
page shows for each."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from studio.core import runtime
from studio.modalities.tabular import profile as profiling
from studio.modalities.tabular.profile import column_profile, column_readings, looks_like_dates, profile_table

DATE_FORMS = {
    "month name first": ["Jun 12 1998", "Jul 3 1999", "Dec 25 2003", "Mar 1 2014"],
    "ISO": ["1998-06-12", "1999-07-03", "2003-12-25", "2014-03-01"],
    "day first, slashes": ["12/06/1998", "25/12/2003", "03/07/1999", "01/03/2014"],
    "date and time": ["2019-03-01 14:22", "2019-03-02 08:05", "2019-03-04 23:59", "2019-04-01 00:30"],
    "day month-name year": ["12 June 1998", "3 July 1999", "25 December 2003", "1 March 2014"],
    "month name, ordinal, comma": [
        "June 12th, 1998",
        "July 3rd, 1999",
        "December 25th, 2003",
        "March 1st, 2014",
    ],
    "month and year": ["Mar-2018", "Apr-2018", "Dec-2019", "Jan-2020"],
}
NOT_DATES = {
    "years as numbers": ["1998", "2001", "2004", "2010"],
    "compact numbers": ["20190301", "20190302", "20190401", "20200101"],
    "codes": ["A1", "B2", "C3", "D4"],
    "words with a number": ["room 12", "gate 3", "row 7", "seat 25"],
    "ratings": ["PG-13", "R", "PG", "G"],
}


@pytest.mark.parametrize("form", sorted(DATE_FORMS))
def test_dates_in_common_text_forms_are_dates(form: str) -> None:
    assert looks_like_dates(DATE_FORMS[form])


@pytest.mark.parametrize("form", sorted(NOT_DATES))
def test_numbers_codes_and_words_are_not_dates(form: str) -> None:
    assert not looks_like_dates(NOT_DATES[form])


def test_a_few_unreadable_values_do_not_stop_a_date_column() -> None:
    values = DATE_FORMS["month name first"] * 10 + ["unknown"]  # 1 in 41
    assert looks_like_dates(values)
    assert not looks_like_dates(DATE_FORMS["month name first"] + ["unknown"] * 3)


@pytest.mark.parametrize("form", sorted(DATE_FORMS))
def test_the_profile_reads_dates_as_the_shipped_runtime_does(form: str) -> None:
    values = pd.Series(DATE_FORMS[form] + [None, "not a date"])
    here = profiling.parse_dates(values, profiling.day_first(values.dropna()))
    there = runtime.parse_dates(values, runtime.day_first(values.dropna()))
    pd.testing.assert_series_equal(here, there)
    assert here.notna().sum() == 4


def test_day_first_only_when_a_first_number_is_above_twelve() -> None:
    assert profiling.day_first(["25/12/2003", "01/03/2014"])
    assert not profiling.day_first(["12/25/2003", "01/03/2014"])  # month first
    assert not profiling.day_first(["2019/03/01", "2019/12/25"])  # year first
    stamps = runtime.parse_dates(pd.Series(["25/12/2003", "01/03/2014"]), dayfirst=True)
    assert [s.strftime("%Y-%m-%d") for s in stamps] == ["2003-12-25", "2014-03-01"]


def movie_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Like a real film table: release dates as text, money over five orders of magnitude, a director
    column with many values, most of them rare, and gaps."""
    rng = np.random.default_rng(seed)
    released = pd.Timestamp("1998-06-12") + pd.to_timedelta(rng.integers(0, 365 * 15, n), unit="D")
    budget = np.exp(rng.normal(16, 1.5, n)).round(-3)  # ~9,000 to ~80 million
    directors = np.array([f"Director {i}" for i in range(120)])
    weights = 1 / np.arange(1, 121) ** 1.1
    return pd.DataFrame(
        {
            "released": [d.strftime("%b %d %Y") for d in released],
            "budget": np.where(rng.random(n) < 0.1, np.nan, budget),
            "running_minutes": rng.normal(110, 20, n).round(),
            "director": rng.choice(directors, n, p=weights / weights.sum()),
            "rating": rng.normal(6, 1, n).round(1),
        }
    )


@pytest.fixture(scope="module")
def movies_profile() -> dict:
    return profile_table(movie_table())


def test_the_profile_says_how_it_reads_dates_money_and_many_categories(movies_profile: dict) -> None:
    released = column_profile(movies_profile, "released")
    assert released["kind"] == "datetime"
    readings = {r["column"]: r["message"] for r in column_readings(movies_profile)}
    assert readings["released"].startswith("'released' holds dates (Jun 1998 to ")
    assert "read as year, month, day of week and day of year" in readings["released"]
    assert column_profile(movies_profile, "budget")["log_scale"] is True
    assert "looks like money or a count" in readings["budget"] and "log scale" in readings["budget"]
    assert column_profile(movies_profile, "running_minutes")["log_scale"] is False
    assert "running_minutes" not in readings
    director = column_profile(movies_profile, "director")
    assert director["kind"] == "categorical" and director["rare_values"] > 0
    assert "learned vector" in readings["director"]
    assert (
        f"the {director['rare_values']} values seen in fewer than 5 rows are pooled" in readings["director"]
    )
    assert "rating" not in readings  # the suggested target is not an input


def test_a_time_of_day_adds_the_hour() -> None:
    frame = pd.DataFrame({"at": DATE_FORMS["date and time"] * 5, "y": range(20)})
    reading = column_profile(profile_table(frame), "at")["reading"]
    assert "day of year and hour" in reading


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.exp(np.random.default_rng(0).normal(10, 2, 500)), True),  # money: a long tail over decades
        (np.random.default_rng(0).poisson(3, 500) * 1.0, False),  # small counts: no long tail
        (np.random.default_rng(0).normal(50, 10, 500), False),  # a measurement
        (np.random.default_rng(0).uniform(0, 100, 500), False),  # a percentage
        (np.exp(np.random.default_rng(0).normal(10, 2, 500)) - 1e6, False),  # negative values
    ],
)
def test_heavy_tailed_positive_numbers(values: np.ndarray, expected: bool) -> None:
    assert profiling.heavy_tailed(values) is expected


def test_datasets_show_says_how_the_columns_are_read(studio_home, tmp_path, capsys) -> None:
    from studio.cli.main import main
    from studio.data import add_csv

    path = tmp_path / "films.csv"
    movie_table().to_csv(path, index=False)
    info = add_csv(path, name="films")
    capsys.readouterr()
    assert main(["datasets", "show", info.id]) == 0
    out = capsys.readouterr().out
    assert "read as: 'released' holds dates (Jun 1998 to " in out
    assert "read as: 'budget' looks like money or a count" in out
