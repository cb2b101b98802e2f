"""The Data page, driven through the app's navigation with Streamlit's AppTest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio import data as datasets

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 60

SHOP_CSV = b"customer_id,age,city,notes,bought\n" + b"".join(
    f"C{i:04d},{20 + i % 40},{['Oslo', 'Rome', 'Lima'][i % 3]},,{'yes' if i % 4 else 'no'}\n".encode()
    for i in range(80)
)


@pytest.fixture
def app(studio_home: Path) -> AppTest:
    """The app on its first page (Data), with a fresh studio home."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("info", "success", "warning", "error", "markdown", "caption")
        for e in at.get(kind)
    ]
    return "\n".join(str(p) for p in parts)


def test_empty_store_invites_the_newcomer_to_start_with_a_sample(app: AppTest) -> None:
    assert "Start with a sample" in app.info[0].value
    labels = [b.label for b in app.button]
    assert {"Add sample: wine", "Add sample: breast cancer", "Add sample: diabetes"} <= set(labels)
    assert app.button(key="data_add_upload").disabled  # nothing uploaded yet
    assert "at most 200 MB" in app.get("file_uploader")[0].label
    assert not app.selectbox  # nothing to look at yet


def test_adding_a_sample_shows_its_profile_preview_and_next_step(app: AppTest) -> None:
    app.button(key="data_add_sample_wine").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.success[0].value == "Added the wine sample."
    (stored,) = datasets.list_datasets()
    assert app.selectbox(key="data_selected").value == stored.id
    assert {m.label: m.value for m in app.metric} == {
        "Rows": "178",
        "Columns": "14",
        "Repeated rows": "0",
        "Suggested target": "target",
    }
    profile = next(f.value for f in app.dataframe if "Column" in f.value.columns)
    assert list(profile["Column"])[:2] == ["alcohol", "malic_acid"] and len(profile) == 14
    assert set(profile["Type"]) == {"number", "category"}
    preview = next(f.value for f in app.dataframe if "alcohol" in f.value.columns)
    assert len(preview) == 100 and "target" in preview.columns
    text = _texts(app)
    assert "Nothing to worry about" in text
    assert "What to do next" in text and "Train" in text


def test_uploading_a_csv_shows_the_warnings_and_what_the_studio_does(app: AppTest) -> None:
    app.get("file_uploader")[0].upload("shop.csv", SHOP_CSV, "text/csv")
    app.run()
    app.text_input(key="data_upload_name").set_value("Shop customers")
    app.button(key="data_add_upload").click().run()
    assert not app.exception, [e.value for e in app.exception]
    (stored,) = datasets.list_datasets()
    assert stored.name == "Shop customers" and stored.n_rows == 80
    assert "Added 'Shop customers': 80 rows, 5 columns." in app.success[0].value
    warnings = [re.sub(r"\\(.)", r"\1", w.value) for w in app.warning]  # as typed, not Markdown
    assert any(
        "'customer_id' has a different value in every row (80 of 80), like a name or an ID, so it is left out "
        "of the inputs" in w
        for w in warnings
    ), warnings
    assert all("**What the studio does:**" in w for w in warnings)
    assert app.metric[3].value == "bought"


CARS_CSV = b"Name,Miles_per_Gallon,Cylinders,Horsepower,Year,Origin\n" + b"".join(
    f"make {i % 30} model,{15 + i % 20},{4 + 2 * (i % 3)},{60 + i % 90},19{70 + i % 12}-01-01,"
    f"{['USA', 'Europe', 'Japan'][i % 3]}\n".encode()
    for i in range(40)
)
VISITS_CSV = b"user_id,signup_date,visits,last_seen\n" + b"".join(
    f"{i},2023-01-{1 + i % 28:02d},{i % 7},2024-02-{1 + i % 28:02d}\n".encode() for i in range(40)
)


def _add(app: AppTest, name: str, data: bytes) -> None:
    app.get("file_uploader")[0].upload(name, data, "text/csv")
    app.run()
    app.button(key="data_add_upload").click().run()
    assert not app.exception, [e.value for e in app.exception]


def test_a_name_column_is_shown_as_left_out_and_the_target_is_what_a_person_would_predict(
    app: AppTest,
) -> None:
    _add(app, "cars.csv", CARS_CSV)
    assert app.metric[3].value == "Miles_per_Gallon"
    warnings = [re.sub(r"\\(.)", r"\1", w.value) for w in app.warning]
    assert any(
        w.startswith(
            "'Name' has a different value in almost every row (30 of 40), like a name or an ID, so it is left "
            "out of the inputs"
        )
        and "To use it anyway, pick it under 'Feature columns'" in w
        for w in warnings
    ), warnings
    profile = next(f.value for f in app.dataframe if "Column" in f.value.columns)
    assert profile.set_index("Column").loc["Name", "Type"] == "id (ignored)"


def test_a_table_without_a_clear_answer_column_suggests_none(app: AppTest) -> None:
    _add(app, "visits.csv", VISITS_CSV)
    assert app.metric[3].value == "none"
    text = _texts(app)
    assert "The studio cannot tell which column you want to predict" in text
    assert "suggested target are already picked" not in text


def test_a_file_that_is_not_a_table_gives_a_plain_error_and_adds_nothing(app: AppTest) -> None:
    app.get("file_uploader")[0].upload("photo.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "text/csv")
    app.run()
    app.button(key="data_add_upload").click().run()
    assert not app.exception
    assert len(app.error) == 1 and "photo.csv" in app.error[0].value
    assert datasets.list_datasets() == []


def test_deleting_a_data_set_needs_a_confirmation(app: AppTest) -> None:
    app.button(key="data_add_sample_diabetes").click().run()
    (stored,) = datasets.list_datasets()
    assert app.button(key="data_delete").disabled
    app.checkbox(key=f"data_delete_confirm_{stored.id}").check().run()
    app.button(key="data_delete").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert datasets.list_datasets() == []
    assert app.success[0].value == "Deleted 'diabetes'."
    assert "Start with a sample" in app.info[0].value


def test_the_app_lists_only_the_pages_that_exist_and_shows_the_data_folder(
    app: AppTest, studio_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sidebar = " ".join(c.value for c in app.sidebar.get("caption"))
    assert str(studio_home) in sidebar and "python -m studio serve" in sidebar

    monkeypatch.setenv("STUDIO_MLFLOW_UI_URL", "http://127.0.0.1:5999/")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    link = at.sidebar.get("link_button")[0]
    assert link.proto.url == "http://127.0.0.1:5999/#/experiments?workflowType=machine_learning"


def test_a_data_set_a_queued_run_uses_is_not_deleted(app: AppTest) -> None:
    from studio import jobs
    from studio.core.spec import RunSpec

    app.button(key="data_add_sample_wine").click().run()
    (stored,) = datasets.list_datasets()
    spec = {"name": "wine · target · queued", "task": "classification"}
    spec["data"] = {"dataset_id": stored.id, "target": "target"}
    job = jobs.submit_job(RunSpec.from_dict(spec), start_scheduler=False)
    app.checkbox(key=f"data_delete_confirm_{stored.id}").check().run()
    app.button(key="data_delete").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert [e.value for e in app.error] == [
        f"'wine' is used by the queued run 'wine · target · queued' (job {job.id}); cancel it or wait for it "
        "to end before deleting."
    ]
    assert [d.id for d in datasets.list_datasets()] == [stored.id]
    assert not any("Deleted" in e.value for e in app.success)


def test_an_uploaded_zip_that_lies_about_its_sizes_is_refused_with_its_limit(
    app: AppTest, tmp_path: Path
) -> None:
    from tests.images.test_zip_budget import lying_zip

    bomb = lying_zip(tmp_path / "bomb.zip", zeros=32 * 2**20).read_bytes()
    app.file_uploader(key="data_upload").upload("bomb.zip", bomb, "application/zip")
    app.run()
    app.button(key="data_add_upload").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert [e.value for e in app.error] == [
        "'bomb.zip' was refused: entry 'red/zeros.png' unpacks to more than the 976.6 KB its zip directory "
        "declares, so the zip lies about its sizes (a zip bomb?); unpacking stopped at that limit and nothing "
        "was kept."
    ]
    assert datasets.list_datasets() == []


def test_dates_money_and_many_categories_are_said_in_plain_words(app: AppTest) -> None:
    from tests.datasets.test_table_readings import movie_table

    _add(app, "films.csv", movie_table().to_csv(index=False).encode())
    text = re.sub(r"\\(.)", r"\1", _texts(app))  # as typed, not Markdown
    assert "'released' holds dates (Jun 1998 to " in text
    assert "read as year, month, day of week and day of year" in text
    assert "'budget' looks like money or a count" in text and "read on a log scale" in text
    assert re.search(r"'director' has \d+ different values: each common one gets a learned vector", text)
    profile = next(f.value for f in app.dataframe if "Column" in f.value.columns)
    assert profile.set_index("Column").loc["released", "Type"] == "date / time"


def test_a_jsonl_of_examples_is_shown_and_listed_as_language_model_examples(app: AppTest) -> None:
    """The language-model kind's reading of the table, asked through its registration: its section (no
    table metrics), its next step, and its own word in the data list's Kind column (it said 'table')."""
    lines = [
        f'{{"prompt": "What is {n} plus {n}?", "response": "It is {2 * n}, the sum of {n} and {n}."}}'
        for n in range(6)
    ]
    _add(app, "chat.jsonl", "\n".join(lines).encode())
    text = _texts(app)
    assert "examples to fine-tune a language model on" in text
    assert "the task *Fine-tune a language model* are already picked; choose a base model" in text
    assert "Suggested target" not in {m.label for m in app.metric}
    listed = next(f.value for f in app.dataframe if "Kind" in f.value.columns)
    assert listed.set_index("Name").loc["chat", "Kind"] == "language-model examples"
