"""Which column the studio suggests predicting, on tables shaped like well-known public ones (made here,
with made-up values), and the identifier columns it leaves out of the inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from studio.data import column_profile, profile_table, target_warnings, warnings_for_target

RNG = np.random.default_rng(7)


def penguins() -> pd.DataFrame:
    n = 344
    frame = pd.DataFrame(
        {
            "species": RNG.choice(["Adelie", "Gentoo", "Chinstrap"], n),
            "island": RNG.choice(["Biscoe", "Dream", "Torgersen"], n),
            "bill_length_mm": RNG.normal(44, 5, n).round(1),
            "bill_depth_mm": RNG.normal(17, 2, n).round(1),
            "flipper_length_mm": RNG.normal(200, 14, n).round(0),
            "body_mass_g": RNG.normal(4200, 800, n).round(0),
            "sex": RNG.choice(["male", "female", None], n, p=[0.48, 0.48, 0.04]),
            "year": RNG.choice([2007, 2008, 2009], n),
        }
    )
    frame.loc[[3, 271], ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]] = np.nan
    return frame


def cars() -> pd.DataFrame:
    n = 406
    makes = ["chevrolet", "ford", "toyota", "datsun", "plymouth", "amc", "dodge", "honda", "vw", "buick"]
    names = [f"{makes[i % 311 % 10]} model {i % 311}" for i in range(n)]
    mpg = RNG.normal(23, 8, n).round(1)
    mpg[RNG.choice(n, 8, replace=False)] = np.nan
    horsepower = RNG.normal(104, 38, n).round(0)
    horsepower[RNG.choice(n, 6, replace=False)] = np.nan
    return pd.DataFrame(
        {
            "Name": names,
            "Miles_per_Gallon": mpg,
            "Cylinders": RNG.choice([3, 4, 5, 6, 8], n),
            "Displacement": RNG.normal(194, 104, n).round(0),
            "Horsepower": horsepower,
            "Weight_in_lbs": RNG.normal(2979, 847, n).round(0),
            "Acceleration": RNG.normal(15.5, 2.8, n).round(1),
            "Year": [f"19{70 + i % 13}-01-01" for i in range(n)],
            "Origin": RNG.choice(["USA", "Europe", "Japan"], n),
        }
    )


def titanic() -> pd.DataFrame:
    n = 891
    cabins = [f"C{i}" if i % 4 == 0 else None for i in range(n)]
    return pd.DataFrame(
        {
            "PassengerId": np.arange(1, n + 1),
            "Survived": RNG.choice([0, 1], n),
            "Pclass": RNG.choice([1, 2, 3], n),
            "Name": [f"Person{i}, Mr. Given{i} Middle{i % 50}" for i in range(n)],
            "Sex": RNG.choice(["male", "female"], n),
            "Age": np.where(RNG.random(n) < 0.2, np.nan, RNG.normal(30, 14, n).round(0)),
            "SibSp": RNG.choice([0, 1, 2, 3], n),
            "Parch": RNG.choice([0, 1, 2], n),
            "Ticket": [f"A/5 {21171 + i % 681}" for i in range(n)],
            "Fare": RNG.gamma(2, 16, n).round(2),
            "Cabin": cabins,
            "Embarked": RNG.choice(["S", "C", "Q"], n),
        }
    )


def iris() -> pd.DataFrame:
    n = 150
    return pd.DataFrame(
        {
            "sepal_length": RNG.normal(5.8, 0.8, n).round(1),
            "sepal_width": RNG.normal(3.0, 0.4, n).round(1),
            "petal_length": RNG.normal(3.8, 1.8, n).round(1),
            "petal_width": RNG.normal(1.2, 0.8, n).round(1),
            "variety": np.repeat(["Setosa", "Versicolor", "Virginica"], 50),
        }
    )


def house_prices() -> pd.DataFrame:
    n = 300
    return pd.DataFrame(
        {
            "Id": np.arange(1, n + 1),
            "MSSubClass": RNG.choice([20, 50, 60, 70, 120], n),
            "LotArea": RNG.normal(10500, 3000, n).round(0),
            "OverallQual": RNG.integers(1, 11, n),
            "YearBuilt": RNG.integers(1900, 2010, n),
            "Neighborhood": RNG.choice(["NAmes", "CollgCr", "OldTown", "Edwards"], n),
            "SalePrice": RNG.normal(180000, 79000, n).round(0),
            "YrSold": RNG.choice([2006, 2007, 2008, 2009, 2010], n),
            "SaleCondition": RNG.choice(["Normal", "Abnorml", "Partial"], n),
        }
    )


def adult_income() -> pd.DataFrame:
    n = 500
    return pd.DataFrame(
        {
            "age": RNG.integers(17, 90, n),
            "workclass": RNG.choice(["Private", "Self-emp", "Gov"], n),
            "fnlwgt": RNG.integers(12000, 1_400_000, n),
            "education": RNG.choice(["Bachelors", "HS-grad", "Masters"], n),
            "education-num": RNG.integers(1, 17, n),
            "marital-status": RNG.choice(["Married", "Never-married", "Divorced"], n),
            "hours-per-week": RNG.integers(1, 99, n),
            "native-country": RNG.choice(["United-States", "Mexico", "India"], n),
            "income": RNG.choice(["<=50K", ">50K"], n, p=[0.76, 0.24]),
        }
    )


def wine_quality() -> pd.DataFrame:
    n = 400
    frame = pd.DataFrame(
        {
            name: RNG.normal(mean, mean / 5, n).round(3)
            for name, mean in [
                ("fixed acidity", 8.3),
                ("volatile acidity", 0.53),
                ("citric acid", 0.27),
                ("residual sugar", 2.5),
                ("chlorides", 0.087),
                ("density", 0.997),
                ("pH", 3.3),
                ("sulphates", 0.66),
                ("alcohol", 10.4),
            ]
        }
    )
    frame.insert(4, "quality", RNG.choice([3, 4, 5, 6, 7, 8], n))  # not last: named like the answer
    return frame


def churn_with_id_first() -> pd.DataFrame:
    n = 200
    return pd.DataFrame(
        {
            "customer_id": [f"CUST-{i:05d}" for i in range(n)],
            "tenure_months": RNG.integers(1, 72, n),
            "plan": RNG.choice(["basic", "plus", "pro"], n),
            "monthly_fee": RNG.normal(60, 20, n).round(2),
            "support_calls": RNG.integers(0, 10, n),
            "renewed": RNG.choice(["yes", "no"], n),
        }
    )


def only_dates_and_ids() -> pd.DataFrame:
    n = 120
    return pd.DataFrame(
        {
            "order_id": np.arange(5000, 5000 + n),
            "uuid": [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(n)],
            "ordered_at": [f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} 10:{i % 60:02d}" for i in range(n)],
            "shipped": [f"2024-{1 + i % 12:02d}-{1 + (i + 3) % 28:02d}" for i in range(n)],
        }
    )


def visits_log() -> pd.DataFrame:
    """Users and when they came back: no column is the answer, and the last one is a date."""
    n = 150
    return pd.DataFrame(
        {
            "user_id": np.arange(1, n + 1),
            "signup_date": [f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(n)],
            "visits": RNG.integers(0, 40, n),
            "minutes_online": RNG.gamma(2, 30, n).round(1),
            "last_seen": [f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(n)],
        }
    )


def sensors_with_year_last() -> pd.DataFrame:
    """Several category columns and a year at the end: too many candidates to pick one."""
    n = 120
    return pd.DataFrame(
        {
            "station": RNG.choice(["north", "south", "east"], n),
            "sensor": RNG.choice(["a", "b"], n),
            "reading": RNG.normal(20, 4, n).round(2),
            "year": RNG.choice([2019, 2020, 2021], n),
        }
    )


@pytest.mark.parametrize(
    ("table", "target", "task"),
    [
        (penguins, "species", "classification"),
        (cars, "Miles_per_Gallon", "regression"),
        (titanic, "Survived", "classification"),
        (iris, "variety", "classification"),
        (house_prices, "SalePrice", "regression"),
        (adult_income, "income", "classification"),
        (wine_quality, "quality", "classification"),
        (churn_with_id_first, "renewed", "classification"),
        (only_dates_and_ids, None, None),
        (visits_log, None, None),
        (sensors_with_year_last, None, None),
    ],
)
def test_the_suggested_target_is_the_column_a_person_would_predict(table, target, task) -> None:
    profile = profile_table(table())
    assert (profile["suggested_target"], profile["suggested_task"]) == (target, task)


def test_years_dates_and_ids_are_never_suggested() -> None:
    frame = penguins()[["bill_length_mm", "body_mass_g", "island", "year"]]
    assert profile_table(frame)["suggested_target"] == "island"  # the one category, not the year
    assert profile_table(frame.drop(columns="island"))["suggested_target"] is None
    numbers = frame.drop(columns="island").assign(record_id=np.arange(len(frame)) * 7 + 3)
    assert profile_table(numbers)["suggested_target"] is None
    assert profile_table(numbers.assign(date=pd.Timestamp("2024-01-01")))["suggested_target"] is None


def test_a_name_column_is_an_identifier_left_out_with_a_plain_reason() -> None:
    profile = profile_table(cars())
    name = column_profile(profile, "Name")
    assert (name["kind"], name["distinct"]) == ("identifier", 311)
    (warning,) = [w for w in profile["warnings"] if w["column"] == "Name"]
    assert warning["code"] == "identifier"
    assert warning["message"] == (
        "'Name' has a different value in almost every row (311 of 406), like a name or an ID, so it is left "
        "out of the inputs: a model cannot learn from values it sees only once."
    )
    assert "Feature columns" in warning["action"] and "To use it anyway" in warning["action"]
    assert column_profile(profile, "Origin")["kind"] == "categorical"


def test_titanic_names_tickets_and_ids_are_identifiers_but_its_categories_are_not() -> None:
    profile = profile_table(titanic())
    kinds = {c["name"]: c["kind"] for c in profile["columns"]}
    assert kinds["PassengerId"] == "identifier" and kinds["Ticket"] == "identifier"
    assert kinds["Name"] in ("identifier", "text")  # left out either way
    assert {kinds[c] for c in ("Sex", "Embarked")} == {"categorical"}


def test_a_name_column_is_refused_as_a_classification_target_with_a_blocking_warning() -> None:
    frame = cars()
    profile = profile_table(frame)
    (warning,) = [w for w in target_warnings(frame, profile, "Name", "classification") if w.get("blocks")]
    assert warning["code"] == "identifier_target" and warning["column"] == "Name"
    assert warning["message"].startswith("'Name' has a different value in almost every row (311 of 406)")
    assert "cannot be predicted as a category" in warning["message"]
    assert any(w.get("blocks") for w in warnings_for_target(frame, profile, "Name", "classification"))
    assert not any(w.get("blocks") for w in warnings_for_target(frame, profile, "Origin", "classification"))
    assert not any(w.get("blocks") for w in profile["warnings"])
