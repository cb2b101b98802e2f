"""The data set store: add, dedupe, list, load, delete, resolve, the samples, and atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from studio.core.errors import DatasetError
from studio.data import (
    SAMPLES,
    DatasetInfo,
    add_csv,
    add_sample,
    get_dataset,
    list_datasets,
    load_profile,
    load_table,
    resolve_dataset,
    store,
)
from studio.jobs import delete_dataset

CSV = "sepal;petal;species\n5,1;1,4;setosa\n4,9;1,4;setosa\n6,3;4,9;versicolor\n5,8;5,1;virginica\n"


@pytest.fixture
def iris_file(tmp_path: Path) -> Path:
    path = tmp_path / "My Iris (v2).csv"
    path.write_text(CSV, encoding="utf-8")
    return path


def test_add_csv_writes_the_dataset_folder(
    studio_home: Path, iris_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    info = add_csv(iris_file)
    assert isinstance(info, DatasetInfo)
    assert info.id.startswith("my-iris-v2-") and len(info.id) == len("my-iris-v2-") + 8
    assert (info.name, info.kind, info.n_rows, info.n_cols) == ("My Iris (v2)", "tabular", 4, 3)
    assert info.source_file == "My Iris (v2).csv"
    assert info.path == studio_home / "datasets" / info.id
    assert sorted(p.name for p in info.path.iterdir()) == ["data.parquet", "meta.json", "profile.json"]
    meta = json.loads((info.path / "meta.json").read_text())
    assert meta["id"] == info.id and meta["created"] == info.created
    assert sorted(p.name for p in (studio_home / "datasets").iterdir()) == [info.id]
    assert not any(cwd.iterdir()), "nothing may be written outside STUDIO_HOME"

    table = load_table(info.id)
    assert table["sepal"].tolist() == [5.1, 4.9, 6.3, 5.8]
    profile = load_profile(info.id)
    assert (profile["suggested_target"], profile["suggested_task"]) == ("species", "classification")
    assert get_dataset(info.id) == info


def test_same_content_is_stored_once(studio_home: Path, iris_file: Path) -> None:
    first = add_csv(iris_file)
    again = add_csv(iris_file, name="another name")
    upload = add_csv(CSV.encode(), filename="upload.csv")
    assert first == again == upload
    assert [info.id for info in list_datasets()] == [first.id]


def test_upload_bytes_are_named_by_filename(studio_home: Path) -> None:
    info = add_csv(b"a,b\n1,x\n2,y\n", filename="Sales 2024.csv")
    assert (info.name, info.source_file) == ("Sales 2024", "Sales 2024.csv")
    assert info.id.startswith("sales-2024-")
    named = add_csv(b"a,b\n1,x\n3,z\n", "Q3", filename="q.csv")
    assert named.name == "Q3" and named.id.startswith("q3-")


def test_list_newest_first_and_delete(studio_home: Path) -> None:
    ids = [add_csv(f"a,b\n{i},x\n{i + 1},y\n".encode(), filename=f"t{i}.csv").id for i in range(3)]
    assert [info.id for info in list_datasets()] == ids[::-1]
    delete_dataset(ids[1])
    assert [info.id for info in list_datasets()] == [ids[2], ids[0]]
    assert sorted(p.name for p in (studio_home / "datasets").iterdir()) == sorted([ids[0], ids[2]])
    with pytest.raises(DatasetError, match="python -m studio datasets list"):
        delete_dataset(ids[1])


@pytest.mark.parametrize("bad_id", ["missing-12345678", "../etc", "", "A B"])
def test_unknown_ids(studio_home: Path, bad_id: str) -> None:
    for call in (get_dataset, load_table, load_profile):
        with pytest.raises(DatasetError) as err:
            call(bad_id)
        assert "`python -m studio datasets list`" in str(err.value) and "\n" not in str(err.value)


def test_resolve_dataset(studio_home: Path, iris_file: Path) -> None:
    added = resolve_dataset(str(iris_file))
    assert resolve_dataset(added.id) == added
    assert resolve_dataset(str(iris_file)) == added
    assert resolve_dataset("sample:wine").name == "wine"
    with pytest.raises(DatasetError) as err:
        resolve_dataset("no-such-thing")
    message = str(err.value)
    assert "sample:wine" in message and "`python -m studio datasets list`" in message
    with pytest.raises(DatasetError, match="no sample called 'iris'"):
        resolve_dataset("sample:iris")


def test_crash_while_writing_leaves_nothing(
    studio_home: Path, iris_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path, data: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "_write_json", broken)
    with pytest.raises(OSError):
        add_csv(iris_file)
    assert list((studio_home / "datasets").iterdir()) == []
    assert list_datasets() == []


def test_damaged_folders_are_skipped_and_leftovers_swept(studio_home: Path, iris_file: Path) -> None:
    info = add_csv(iris_file)
    root = studio_home / "datasets"
    (root / "half-written").mkdir()
    fresh, stale = root / ".tmp-x-123", root / ".trash-y-456"
    fresh.mkdir()
    stale.mkdir()
    os.utime(stale, (0, 0))
    assert list_datasets() == [info]
    add_csv(b"a,b\n1,2\n3,4\n", filename="other.csv")
    assert fresh.exists() and not stale.exists()


@pytest.mark.parametrize(
    ("sample", "rows", "target", "task", "classes"),
    [
        ("wine", 178, "target", "classification", {"class_0", "class_1", "class_2"}),
        ("breast_cancer", 569, "diagnosis", "classification", {"malignant", "benign"}),
        ("diabetes", 442, "target", "regression", None),
    ],
)
def test_samples(
    studio_home: Path, sample: str, rows: int, target: str, task: str, classes: set[str] | None
) -> None:
    info = add_sample(sample)
    assert sample in SAMPLES and info.n_rows == rows and info.source_file == f"sample:{sample}"
    profile = load_profile(info.id)
    assert (profile["suggested_target"], profile["suggested_task"]) == (target, task)
    table = load_table(info.id)
    assert table.columns[-1] == target
    if classes is not None:
        assert set(table[target]) == classes
    else:
        assert pd.api.types.is_numeric_dtype(table[target])
    assert add_sample(sample) == info
    assert len(list_datasets()) == 1


@pytest.mark.parametrize("sample", ["wine", "breast_cancer", "diabetes"])
def test_the_shipped_sample_tables_are_scikit_learns_tables_value_for_value(sample: str) -> None:
    pytest.importorskip("sklearn")
    from studio.data.samples import sample_table, sklearn_table

    pd.testing.assert_frame_equal(sample_table(sample), sklearn_table(sample), check_exact=True)


def test_adding_a_sample_table_imports_no_scikit_learn(tmp_path: Path) -> None:
    """``serve``'s first start adds the wine sample: that must not cost scikit-learn's import."""
    import subprocess
    import sys

    code = (
        "import sys; from studio.data import add_sample; info = add_sample('wine'); "
        "print(info.n_rows, 'sklearn' in sys.modules)"
    )
    env = {**os.environ, "STUDIO_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["178", "False"], done.stdout


def test_stored_table_reads_back_the_same_and_measurements_are_stored_plain(
    studio_home: Path, tmp_path: Path
) -> None:
    import numpy as np
    from pyarrow import parquet

    rng = np.random.default_rng(0)
    n = 30_000
    table = pd.DataFrame(
        {
            "measured": rng.normal(size=n),  # every value differs: plain
            "rating": rng.choice([1.0, 1.5, 2.0, 4.5], size=n),  # a few values: a dictionary
            "count": rng.integers(0, 50, size=n),
            "colour": rng.choice(["red", "blue"], size=n),
        }
    )
    table.loc[::7, "measured"] = np.nan
    path = tmp_path / "table.csv"
    table.to_csv(path, index=False)
    info = add_csv(path)

    back = load_table(info.id)
    pd.testing.assert_frame_equal(back, store.load_table(info.id))
    assert back["measured"].isna().sum() == len(range(0, n, 7))
    np.testing.assert_allclose(back["measured"].to_numpy(), table["measured"].to_numpy(), equal_nan=True)
    assert back["colour"].tolist() == table["colour"].tolist()
    assert back["count"].tolist() == table["count"].tolist()

    columns = parquet.ParquetFile(info.path / "data.parquet").metadata.row_group(0)
    encodings = {columns.column(i).path_in_schema: columns.column(i).encodings for i in range(4)}
    assert not any("DICTIONARY" in e for e in encodings["measured"])
    assert any("DICTIONARY" in e for e in encodings["rating"])
    assert any("DICTIONARY" in e for e in encodings["colour"])
