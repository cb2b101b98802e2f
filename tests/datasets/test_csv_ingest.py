"""CSV reading: the files spreadsheets save, and one clear sentence for every file that cannot be used."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from studio.core.errors import DatasetError
from studio.data import add_csv, read_table_file
from studio.modalities.tabular import ingest as csv_ingest

PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
)
XLSX_BYTES = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(256)) * 4


def write(tmp_path: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode(encoding))
    else:
        path.write_bytes(content)
    return path


def test_semicolon_decimal_comma_latin1(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prices.csv",
        "Produit;Prix;Quantité\nCafé;3,5;2\nThé;2,25;10\nCrème brûlée;1.234,5;1\n",
        encoding="latin-1",
    )
    df = read_table_file(path)
    assert list(df.columns) == ["Produit", "Prix", "Quantité"]
    assert df["Produit"].tolist() == ["Café", "Thé", "Crème brûlée"]
    assert df["Prix"].tolist() == [3.5, 2.25, 1234.5]
    assert pd.api.types.is_integer_dtype(df["Quantité"])


def test_cp1252_characters(tmp_path: Path) -> None:
    path = write(tmp_path, "quotes.csv", "name,price\n“Deluxe” – 5 €,5\nplain,2\n", "cp1252")
    df = read_table_file(path)
    assert df["name"].tolist() == ["“Deluxe” – 5 €", "plain"]


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.csv", b"\xef\xbb\xbfid_code,value\nA,1\nB,2\n")
    df = read_table_file(path)
    assert df.columns[0] == "id_code"
    assert df["value"].tolist() == [1, 2]


def test_utf16_excel_unicode_text(tmp_path: Path) -> None:
    path = write(tmp_path, "unicode.txt", "a\tb\n1\tx\n2\ty\n".encode("utf-16"))
    df = read_table_file(path)
    assert df.shape == (2, 2)
    assert df["b"].tolist() == ["x", "y"]


def test_quoted_delimiters_and_newlines(tmp_path: Path) -> None:
    text = 'name,comment,score\n"Smith, John","said ""hi""\nand left",3\nAnn,"a, b, c",4\n'
    df = read_table_file(write(tmp_path, "quoted.csv", text))
    assert df.shape == (2, 3)
    assert df.loc[0, "name"] == "Smith, John"
    assert df.loc[0, "comment"] == 'said "hi"\nand left'
    assert df["score"].tolist() == [3, 4]


@pytest.mark.parametrize("delimiter", ["\t", "|", ";", ","])
def test_delimiters(tmp_path: Path, delimiter: str) -> None:
    rows = [["a", "b", "c"], ["1", "x y", "2.5"], ["2", "z", "3.5"], ["3", "w", ""]]
    text = "\n".join(delimiter.join(row) for row in rows) + "\n"
    df = read_table_file(write(tmp_path, "t.csv", text))
    assert list(df.columns) == ["a", "b", "c"]
    assert df["c"].tolist()[:2] == [2.5, 3.5]
    assert df["c"].isna().tolist() == [False, False, True]


def test_windows_newlines_thousands_and_missing_markers(tmp_path: Path) -> None:
    text = 'city,population,area\r\nA,"1,234,567",?\r\nB,"12,000",3.5\r\nC,900,-\r\n'
    df = read_table_file(write(tmp_path, "cities.csv", text))
    assert df["population"].tolist() == [1234567, 12000, 900]
    assert df["area"].isna().sum() == 2
    assert df.loc[1, "area"] == 3.5


def test_excel_sep_hint_and_trailing_empty_columns(tmp_path: Path) -> None:
    text = "sep=;\na;b;;\n1;x;;\n2;y;;\n;;;\n"
    df = read_table_file(write(tmp_path, "excel.csv", text))
    assert list(df.columns) == ["a", "b"]
    assert len(df) == 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"a;b\r1,5;x\r2,5;y\r", {"a": [1.5, 2.5], "b": ["x", "y"]}),
        (b"\n\na,b\n1,2\n\n3,4\n", {"a": [1, 3], "b": [2, 4]}),
        (b"a\tb\n1,234\tx\n12,500\ty\n", {"a": [1234, 12500], "b": ["x", "y"]}),
        (b"a\tb\n1,5\tx\n12,25\ty\n", {"a": [1.5, 12.25], "b": ["x", "y"]}),
        (b"a,b\nx\x81y,1\nz,2\n", {"a": ["x\x81y", "z"], "b": [1, 2]}),
        (b"a,b,c\n1,2,3,\n4,5,6,\n", {"a": [1, 4], "b": [2, 5], "c": [3, 6]}),
        (b'a,b,c,\n1,2,"3",\n4,5,6\n', {"a": [1, 4], "b": [2, 5], "c": [3, 6]}),
        (b"a, b\n1, x\n2, y", {"a": [1, 2], "b": ["x", "y"]}),
        (b"a,b\n-,1\n-,2\n", {"a": ["-", "-"], "b": [1, 2]}),
    ],
    ids=[
        "old-mac-newlines",
        "blank-lines",
        "tab-thousands",
        "tab-decimal-comma",
        "latin-1-fallback",
        "trailing-delimiters",
        "trailing-delimiter-on-header",
        "spaces-no-final-newline",
        "dash-only-column-stays-text",
    ],
)
def test_spreadsheet_quirks(content: bytes, expected: dict[str, list[object]]) -> None:
    assert read_table_file(content, filename="quirks.csv").to_dict("list") == expected


def test_duplicate_and_empty_headers_are_renamed(tmp_path: Path) -> None:
    text = "col,col, ,value\n1,2,3,4\n5,6,7,8\n"
    df = read_table_file(write(tmp_path, "dupes.csv", text))
    assert list(df.columns) == ["col", "col_2", "unnamed_3", "value"]
    assert df.attrs["renamed_columns"] == [["col", "col_2"], ["", "unnamed_3"]]


def test_bytes_upload_with_filename() -> None:
    df = read_table_file(b"x;y\n1,5;a\n2,5;b\n", filename="upload.csv")
    assert df["x"].tolist() == [1.5, 2.5]


def test_many_columns(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(2000))
    row = ",".join(str(i) for i in range(2000))
    df = read_table_file(write(tmp_path, "wide.csv", f"{header}\n{row}\n{row}\n"))
    assert df.shape == (2, 2000)


# --------------------------------------------------------------------------- bad files
def assert_one_clear_sentence(err: pytest.ExceptionInfo[DatasetError], *fragments: str) -> None:
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    assert message[0].isupper() or message[0] == "'"
    assert message.endswith(".")
    for fragment in fragments:
        assert fragment in message, message


def assert_nothing_stored(home: Path) -> None:
    datasets = home / "datasets"
    assert not datasets.exists() or not any(datasets.iterdir())


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"", ["is empty"]),
        (b"  \n\n", ["is empty"]),
        (b"a,b,c\n", ["no data rows"]),
        (b"a,b,c\n,,\n\n", ["no data rows"]),
        (PNG_BYTES, ["binary file", "PNG image", "save it as CSV"]),
        (XLSX_BYTES, ["binary file", "Excel workbook", "save it as CSV"]),
        (b"a,b,c\n1,2,3\n4,5,6,7\n8,9,10\n", ["Line 3", "4 fields", "header has 3"]),
        (b"a,b,c\n1,2,3\n4,5\n", ["Line 3", "2 fields", "header has 3"]),
        (b'a,b,c\n1,"2,x",3\n"4",5,"6\n7",8\n', ["Line 3", "4 fields", "header has 3"]),
        (b"value\n1\n2\n3\n", ["only one column", "comma", "semicolon", "tab", "pipe"]),
        (b'a,b\n1,2\n3,"x\n4,5\n', ["quote", "never closed"]),
    ],
    ids=[
        "empty",
        "blank",
        "header-only",
        "header-and-empty-rows",
        "png",
        "xlsx",
        "too-many-fields",
        "too-few-fields",
        "ragged-quoted",
        "single-column",
        "unclosed-quote",
    ],
)
def test_bad_files(tmp_path: Path, studio_home: Path, content: bytes, fragments: list[str]) -> None:
    path = write(tmp_path, "bad.csv", content)
    with pytest.raises(DatasetError) as err:
        add_csv(path)
    assert_one_clear_sentence(err, "'bad.csv'", *fragments)
    assert_nothing_stored(studio_home)


def test_ragged_counts_other_bad_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "ragged.csv", "a;b\n1;2\n3;4;5\n6\n7;8\n")
    with pytest.raises(DatasetError) as err:
        read_table_file(path)
    assert_one_clear_sentence(err, "Line 3", "3 fields", "1 more row has")


@pytest.mark.parametrize("quote", ["", '"'])
def test_ragged_line_numbers_count_physical_lines(quote: str) -> None:
    content = f'sep=;\n\na;b\n{quote}1{quote};"x\ny"\n3;4;5\n'.encode()
    if not quote:
        content = content.replace(b'"x\ny"', b"x")
    with pytest.raises(DatasetError) as err:
        read_table_file(content, filename="hint.csv")
    assert_one_clear_sentence(err, f"Line {6 if quote else 5} of 'hint.csv' has 3 fields")


def test_upload_over_max_bytes(studio_home: Path) -> None:
    data = b"a,b\n" + b"1,2\n" * 1000
    with pytest.raises(DatasetError) as err:
        add_csv(data, filename="big.csv", max_bytes=1024)
    assert_one_clear_sentence(err, "'big.csv'", "3.9 KB", "1.0 KB upload limit")
    assert_nothing_stored(studio_home)


def test_file_bigger_than_free_memory(
    tmp_path: Path, studio_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_ingest, "available_memory_bytes", lambda: 10_000)
    path = write(tmp_path, "huge.csv", "a,b\n" + "1,2\n" * 2000)
    with pytest.raises(DatasetError) as err:
        add_csv(path)
    assert_one_clear_sentence(err, "'huge.csv' is 7.8 KB", "9.8 KB of memory is free")
    assert_nothing_stored(studio_home)


def test_too_many_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_ingest, "MAX_COLUMNS", 10)
    header = ",".join(f"c{i}" for i in range(11))
    path = write(tmp_path, "wide.csv", f"{header}\n{header}\n")
    with pytest.raises(DatasetError) as err:
        read_table_file(path)
    assert_one_clear_sentence(err, "11 columns", "at most 10")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        read_table_file(tmp_path / "nope.csv")
    assert_one_clear_sentence(err, "does not exist")


def test_numbers_too_large_for_training_become_missing_with_a_warning(
    studio_home: Path, tmp_path: Path
) -> None:
    import json

    from studio.data import load_profile, load_table

    rows = ["x,y,z,name"] + [f"{i / 10},{i * 2},{i % 3},row{i}" for i in range(20)]
    rows[3] = "1e300,4,0,row2"
    rows[5] = "-1e300,8,1,row4"
    rows[7] = "6,inf,1,row6"
    rows[9] = "8,3.5e38,0,row8"  # above float32's largest (about 3.4028e38)
    rows[11] = "1,3.3e38,0,row10"  # still fits
    path = write(tmp_path, "extreme.csv", "\n".join(rows) + "\n")

    df = read_table_file(path)
    assert df["x"].isna().sum() == 2 and df["y"].isna().sum() == 2
    assert df["y"].max() == pytest.approx(3.3e38)
    assert df.attrs["out_of_range_values"] == [["x", 2], ["y", 2]]

    info = add_csv(path)
    profile = load_profile(info.id)
    json.dumps(profile, allow_nan=False)
    warnings = {w["column"]: w for w in profile["warnings"] if w["code"] == "out_of_range"}
    assert set(warnings) == {"x", "y"}
    assert (
        warnings["x"]["message"] == "'x' has 2 values too large to train with (beyond ±3.4e38, or infinite)."
    )
    assert "treated as missing" in warnings["x"]["action"]
    assert load_table(info.id)["x"].isna().sum() == 2
