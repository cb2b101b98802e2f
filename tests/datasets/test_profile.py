"""Profiles: column kinds, suggested target and task, and every warning code."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pandas as pd
import pytest

from studio.data import (
    column_profile,
    profile_table,
    read_table_file,
    target_warnings,
    warnings_for_target,
)
from studio.modalities.tabular.profile import looks_like_text

N = 240


def every_kind_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], N)
    return pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + N),
            "uuid": [str(uuid.UUID(int=int(i) * 7919 + 1)) for i in range(N)],
            "age": rng.normal(40, 12, N).round(1),
            "visits": rng.integers(0, 6, N),
            "colour": colour,
            "subscribed": rng.choice(["yes", "no"], N),
            "signup": [f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(N)],
            "review": [
                f"Customer number {i} wrote a long and thoughtful review about item {i * 3}" for i in range(N)
            ],
            "flag": np.array([True, False] * (N // 2)),
            "country": ["FR"] * N,
            "spend": rng.gamma(2.0, 30.0, N).round(2),
        }
    )


def kinds(profile: dict) -> dict[str, str]:
    return {column["name"]: column["kind"] for column in profile["columns"]}


def codes(warnings: list[dict]) -> list[str]:
    return [warning["code"] for warning in warnings]


def test_every_kind() -> None:
    profile = profile_table(every_kind_table())
    assert kinds(profile) == {
        "customer_id": "identifier",
        "uuid": "identifier",
        "age": "numeric",
        "visits": "numeric",
        "colour": "categorical",
        "subscribed": "boolean",
        "signup": "datetime",
        "review": "text",
        "flag": "boolean",
        "country": "categorical",
        "spend": "numeric",
    }


def test_row_index_is_an_identifier_but_a_year_run_is_not() -> None:
    df = every_kind_table()[["age", "spend"]]
    df.insert(0, "unnamed_1", np.arange(N))
    df.insert(1, "year", np.arange(1800, 1800 + N))
    assert kinds(profile_table(df))["unnamed_1"] == "identifier"
    assert kinds(profile_table(df))["year"] == "numeric"


def test_profile_shape_and_json() -> None:
    df = every_kind_table()
    df.loc[:9, "age"] = np.nan
    profile = profile_table(df)
    json.dumps(profile, allow_nan=False)
    assert (profile["n_rows"], profile["n_cols"], profile["duplicate_rows"]) == (N, 11, 0)
    age = column_profile(profile, "age")
    assert age["missing"] == 10 and age["missing_share"] == pytest.approx(10 / N, abs=1e-6)
    assert set(age["stats"]) == {"min", "max", "mean", "std"}
    assert age["stats"]["min"] <= age["stats"]["mean"] <= age["stats"]["max"]
    assert all(isinstance(example, str) for example in age["examples"]) and len(age["examples"]) == 5
    colour = column_profile(profile, "colour")
    assert colour["distinct"] == 3
    assert sum(count for _, count in colour["stats"]["top"]) == N
    signup = column_profile(profile, "signup")
    assert signup["stats"]["min"].startswith("2024-01-01")
    assert signup["stats"]["max"].startswith("2024-12-")


def test_suggested_target_last_column_regression() -> None:
    profile = profile_table(every_kind_table())
    assert profile["suggested_target"] == "spend"
    assert profile["suggested_task"] == "text_regression"  # its 'review' column is free text
    without_text = profile_table(every_kind_table().drop(columns=["review"]))
    assert (without_text["suggested_target"], without_text["suggested_task"]) == ("spend", "regression")


@pytest.mark.parametrize("name", ["label", "Target", "CLASS", "y", "Outcome", "diagnosis"])
def test_suggested_target_by_name(name: str) -> None:
    df = every_kind_table()
    df.insert(2, name, ["a", "b", "c"] * (N // 3))
    profile = profile_table(df)
    assert profile["suggested_target"] == name
    assert profile["suggested_task"] == "text_classification"  # 'review' is free text


def test_few_whole_numbers_suggest_classification() -> None:
    df = every_kind_table().drop(columns=["review"])
    df["rating"] = np.tile([1, 2, 3, 4, 5], N // 5)
    profile = profile_table(df)
    assert profile["suggested_target"] == "rating"
    assert column_profile(profile, "rating")["kind"] == "numeric"
    assert profile["suggested_task"] == "classification"
    df["rating"] = np.arange(N) % 97
    assert profile_table(df)["suggested_task"] == "regression"


def test_boolean_target_is_classification() -> None:
    df = every_kind_table()[["age", "spend", "subscribed"]]
    profile = profile_table(df)
    assert (profile["suggested_target"], profile["suggested_task"]) == ("subscribed", "classification")


def test_column_warnings() -> None:
    df = every_kind_table()
    df.loc[: int(N * 0.6), "visits"] = np.nan
    profile = profile_table(df)
    found = {(w["code"], w["column"]) for w in profile["warnings"]}
    assert ("identifier", "customer_id") in found
    assert ("identifier", "uuid") in found
    assert ("constant", "country") in found
    assert ("high_missing", "visits") in found
    assert ("free_text", "review") in found  # left out of the inputs, and the profile says so
    for warning in profile["warnings"]:
        assert warning["message"].endswith(".") and "\n" not in warning["message"]
        assert warning["action"]


def test_duplicates_warning() -> None:
    df = every_kind_table()
    df = pd.concat([df, df.iloc[:7]], ignore_index=True)
    profile = profile_table(df)
    assert profile["duplicate_rows"] == 7
    (warning,) = [w for w in profile["warnings"] if w["code"] == "duplicates"]
    assert "7 rows" in warning["message"]


def test_renamed_columns_warning() -> None:
    df = read_table_file(b"a,a,,b\n1,2,3,4\n5,6,7,8\n", filename="x.csv")
    profile = profile_table(df)
    (warning,) = [w for w in profile["warnings"] if w["code"] == "renamed_columns"]
    assert "'a' -> 'a_2'" in warning["message"] and "(empty) -> 'unnamed_3'" in warning["message"]


def classification_table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    labels = ["common"] * 200 + ["medium"] * 40 + ["rare"] * 3 + [None] * 4
    return pd.DataFrame(
        {
            "x1": rng.normal(size=len(labels)),
            "x2": rng.choice(["p", "q"], len(labels)),
            "code": [{"common": 1, "medium": 2, "rare": 3}.get(label) for label in labels],
            "label": labels,
        }
    )


def test_target_warnings() -> None:
    df = classification_table()
    profile = profile_table(df)
    assert profile["suggested_target"] == "label"
    by_code = {w["code"]: w for w in profile["warnings"]}
    assert "4 rows" in by_code["target_missing"]["message"]
    assert "dropped" in by_code["target_missing"]["action"]
    assert "'rare' (3 rows)" in by_code["rare_class"]["message"]
    assert "'medium'" not in by_code["rare_class"]["message"]
    imbalance = by_code["imbalance"]
    assert "'common' has 200 rows" in imbalance["message"] and "accuracy may mislead" in imbalance["message"]
    assert "weighs every class equally" in imbalance["action"]
    assert by_code["leak"]["column"] == "code"
    assert "ignored" in by_code["leak"]["action"]


def test_balanced_target_has_no_class_warnings() -> None:
    df = every_kind_table()
    profile = profile_table(df)
    assert not set(codes(target_warnings(df, profile, "colour", "classification"))) & {
        "rare_class",
        "imbalance",
        "leak",
    }


def test_leak_of_identical_numeric_target() -> None:
    df = every_kind_table()
    df["spend_copy"] = df["spend"] * 100
    df = df[[c for c in df.columns if c != "spend"] + ["spend"]]
    warnings = target_warnings(df, profile_table(df), "spend")
    assert [(w["code"], w["column"]) for w in warnings] == [("leak", "spend_copy")]


def test_unique_feature_does_not_leak_a_unique_target() -> None:
    df = every_kind_table()
    profile = profile_table(df)
    assert "leak" not in codes(target_warnings(df, profile, "spend"))


def test_warnings_for_another_target() -> None:
    df = classification_table()
    profile = profile_table(df)
    warnings = warnings_for_target(df, profile, "x2", "classification")
    assert "target_missing" not in codes(warnings)
    assert all(w["column"] != "x2" for w in warnings if w["code"] in ("constant", "identifier"))


def test_profile_is_fast() -> None:
    rng = np.random.default_rng(2)
    n = 100_000
    data = {f"f{i}": rng.normal(size=n) for i in range(40)}
    data |= {f"c{i}": rng.choice(["a", "b", "c", "d"], n) for i in range(9)}
    data["target"] = rng.choice(["yes", "no"], n)
    df = pd.DataFrame(data)
    start = time.perf_counter()
    profile = profile_table(df)
    assert time.perf_counter() - start < 5
    assert profile["n_cols"] == 50 and profile["suggested_task"] == "classification"


def test_a_long_column_of_fractions_counts_its_values_on_a_sample_and_says_at_least(monkeypatch) -> None:
    """Counting every different value of a million fractional numbers costs as much as the rest of the
    profile: a long column counts a sample first and, when that is already large, says "at least" (a
    true lower bound); small counts, which the studio's choices read, stay exact."""
    from studio.app import ui
    from studio.modalities.tabular import profile as profile_module

    monkeypatch.setattr(profile_module, "DISTINCT_SAMPLE_ROWS", 500)
    monkeypatch.setattr(profile_module, "EXACT_DISTINCT_BELOW", 100)
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"many": rng.normal(size=5000), "few": rng.choice([0.5, 1.5, 2.5], size=5000)})
    df.loc[4999, "few"] = 9.5  # one rare value that a sample of every 10th row misses
    profile = profile_table(df)
    many, few = column_profile(profile, "many"), column_profile(profile, "few")
    assert many["distinct_at_least"] and 100 <= many["distinct"] <= 5000
    assert many["distinct"] < df["many"].nunique()  # only the sampled rows were counted
    assert (few["distinct"], few.get("distinct_at_least")) == (4, None)  # exact, rare value included
    assert ui.distinct_words(many) == f"at least {many['distinct']:,}" and ui.distinct_words(few) == "4"
    table = ui.profile_frame(profile)
    assert table.loc[table["Column"] == "many", "Different values"].item().startswith("at least ")


@pytest.mark.parametrize("columns_at_a_time", [1, 2, 4, 50])
def test_duplicate_rows_are_counted_exactly_column_group_by_column_group(columns_at_a_time) -> None:
    from studio.modalities.tabular.profile import duplicate_row_count

    rng = np.random.default_rng(1)
    df = pd.DataFrame(rng.integers(0, 3, size=(3000, 6)), columns=list("abcdef")).astype({"f": str})
    df.loc[::7, "c"] = np.nan
    exact = int(pd.util.hash_pandas_object(df, index=False).duplicated().sum())
    assert exact > 0 and duplicate_row_count(df, columns_at_a_time) == exact
    unique = pd.DataFrame({"x": np.arange(1000.0), "y": 1.0, "z": "same"})
    assert duplicate_row_count(unique, columns_at_a_time) == 0
    assert duplicate_row_count(unique.iloc[:0], columns_at_a_time) == 0
    assert duplicate_row_count(pd.concat([unique, unique.iloc[:5]]), columns_at_a_time) == 5


def test_whole_numbers_stored_as_fractions_are_told_apart_past_the_first_rows() -> None:
    whole = np.arange(5000, dtype=float)
    late_fraction = whole.copy()
    late_fraction[4000] = 0.5  # past the head the check looks at first
    early_fraction = whole.copy()
    early_fraction[3] = 0.5
    profile = profile_table(pd.DataFrame({"whole": whole, "late": late_fraction, "early": early_fraction}))
    integer = {column["name"]: column["integer"] for column in profile["columns"]}
    assert integer == {"whole": True, "late": False, "early": False}


# ---- free text against names and codes, by what the values look like
REVIEWS = [
    "screen cracked after the update",
    "the battery lasts all day and it charges fast",
    "arrived late and the box was damaged",
    "great phone for the price",
    "it stopped working after a week",
    "love the camera, the screen is bright",
    "not worth the money",
    "the update broke my wifi",
]
NAMES = [
    "Braund, Mr. Owen Harris",
    "Cumings, Mrs. John Bradley (Florence Briggs Thayer)",
    "Heikkinen, Miss. Laina",
    "Futrelle, Mrs. Jacques Heath (Lily May Peel)",
    "Allen, Mr. William Henry",
    "Moran, Mr. James",
    "McCarthy, Mr. Timothy J",
    "Palsson, Master. Gosta Leonard",
]
FILMS = [  # the first titles of a real table of 3,200 films
    "The Land Girls",
    "First Love, Last Rites",
    "I Married a Strange Person",
    "Let's Talk About Sex",
    "Slam",
    "Mississippi Mermaid",
    "Following",
    "Foolish",
    "Pirates of the Caribbean: The Curse of the Black Pearl",
    "The Lord of the Rings: The Return of the King",
]
CARS = [
    "chevrolet chevelle malibu",
    "buick skylark 320",
    "plymouth satellite",
    "amc rebel sst",
    "ford torino",
    "ford galaxie 500",
    "chevrolet impala",
    "plymouth fury iii",
]


@pytest.mark.parametrize(
    ("values", "text"),
    [
        (REVIEWS, True),
        (NAMES, False),
        (CARS, False),
        (FILMS, False),
        ([f"INV-{i:05d}" for i in range(8)], False),
        ([f"c0ffee{i}ab" for i in range(8)], False),
        (["great product", "the worst", "fast shipping and a fair price", "not good", "it broke"] * 2, True),
    ],
    ids=[
        "reviews",
        "passenger names",
        "car names",
        "film titles",
        "invoice numbers",
        "hex codes",
        "short reviews",
    ],
)
def test_text_is_told_from_names_and_codes_by_its_words(values: list[str], text: bool) -> None:
    assert looks_like_text(values) is text


def test_a_review_column_is_read_as_text_and_described_in_plain_words() -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "invoice": [f"INV-{i:05d}" for i in range(200)],
            "review": [
                REVIEWS[i % 8]
                + f" {' '.join(rng.choice(['really', 'honestly', 'sadly', 'truly', 'sure', 'ok', 'wow', 'meh', 'yes', 'hmm'], 2))}"
                for i in range(200)
            ],
            "label": rng.choice(["good", "bad"], 200),
        }
    )
    df.loc[:4, "review"] = None
    profile = profile_table(df)
    assert kinds(profile) == {"invoice": "identifier", "review": "text", "label": "categorical"}
    assert profile["suggested_task"] == "text_classification"
    stats = column_profile(profile, "review")["stats"]
    assert stats["empty"] == 5 and stats["words_max"] == 11 and 6 < stats["words_mean"] < 9
    assert dict(stats["top_words"])["update"] == 2 * 25 - 1  # two reviews of eight, 25 times each, one emptied
    assert not {"the", "and", "it"} & set(dict(stats["top_words"]))
    assert sum(stats["length_histogram"]["counts"]) == 195
    (note,) = [w for w in profile["warnings"] if w["code"] == "free_text"]
    assert (
        note["message"].startswith(f"'review' holds free text: {stats['words_mean']:.1f} words on average")
        and "different words; it is read as text" in note["message"]
    )
