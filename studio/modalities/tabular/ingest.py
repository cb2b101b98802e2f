"""Read the CSV files spreadsheets really save: guess the delimiter and encoding, read decimal commas,
and turn every bad file into one plain :class:`DatasetError` sentence instead of a traceback.

``read_table_file`` is used both when a data set is added and when ``predict`` reads new rows, so the
two always see the same columns and types.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from studio.core.errors import DatasetError

DELIMITERS: dict[str, str] = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
MAX_COLUMNS = 5000
# A table in memory takes several times its file size (strings become Python objects, the text is decoded).
MEMORY_FACTOR = 5
SNIFF_CHARS = 64 * 1024
SNIFF_RECORDS = 50
# Cells that mean "no value" inside an otherwise numeric column.
MISSING_MARKERS = frozenset(
    {"?", "-", "--", ".", "n/a", "na", "nan", "null", "none", "missing", "#n/a", "#value!"}
)

_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "an Excel workbook or a zip archive?"),
    (b"\xd0\xcf\x11\xe0", "an Excel workbook?"),
    (b"\x89PNG", "a PNG image?"),
    (b"\xff\xd8\xff", "a JPEG image?"),
    (b"GIF8", "a GIF image?"),
    (b"%PDF", "a PDF document?"),
    (b"\x1f\x8b", "a gzip-compressed file?"),
)
_DECIMAL_COMMA = re.compile(r"^[+-]?(?:\d+|\d{1,3}(?:[.\s\u00a0\u202f]\d{3})+)(?:,\d+)?$")
_THOUSANDS_COMMA = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_SEP_HINT = re.compile(r"^sep=(.)\n")
_CONTENT = re.compile(rb"[^ \t\r\n\x00\xef\xbb\xbf\xff\xfe]")
# Training runs in 32-bit floats: a number beyond this (or an "inf" cell) would become infinite there.
FLOAT32_MAX = float(np.finfo(np.float32).max)
OUT_OF_RANGE_ATTR = "out_of_range_values"


def available_memory_bytes() -> int:
    """Memory the operating system can still give this process (tests replace this)."""
    try:
        import psutil
    except ImportError:  # psutil is a requirement; without it the size check is skipped
        return 1 << 62
    return int(psutil.virtual_memory().available)


def human_size(n_bytes: float) -> str:
    """``1536`` -> ``'1.5 KB'`` (every size the data messages name)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:,.0f} {unit}" if unit == "bytes" else f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def read_table_file(
    path_or_bytes: str | Path | bytes, filename: str | None = None, *, max_bytes: int | None = None
) -> pd.DataFrame:
    """Read a CSV (or Parquet) file or upload into a DataFrame with clean, unique column names.

    ``filename`` names raw bytes in messages. Renamed columns are listed in
    ``df.attrs["renamed_columns"]`` (``[original, new]`` pairs) for the profile's warning. Raises
    :class:`DatasetError` with one sentence for anything that is not a usable table.
    """
    data, label = read_source_bytes(path_or_bytes, filename, max_bytes=max_bytes)
    return parse_table_bytes(data, label)


def read_source_bytes(
    path_or_bytes: str | Path | bytes, filename: str | None = None, *, max_bytes: int | None = None
) -> tuple[bytes, str]:
    """The raw bytes of a path or upload, after the size checks, and the name to use in messages."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        label = filename or "the uploaded file"
        check_size(len(data), label, max_bytes)
        return data, label
    path = Path(path_or_bytes).expanduser()
    label = filename or path.name
    if not path.is_file():
        raise DatasetError(f"File '{path}' does not exist (or is a folder, not a file).")
    check_size(path.stat().st_size, label, max_bytes)
    try:
        return path.read_bytes(), label
    except OSError as err:
        raise DatasetError(f"File '{path}' cannot be read ({err.strerror or err}).") from None


def check_size(size: int, label: str, max_bytes: int | None) -> None:
    """Refuse files over the upload limit or too big for the free memory, before reading them."""
    if max_bytes is not None and size > max_bytes:
        raise DatasetError(
            f"'{label}' is {human_size(size)}, over the {human_size(max_bytes)} upload limit; "
            "upload a smaller file or add it from the command line (`python -m studio datasets add FILE`)."
        )
    free = available_memory_bytes()
    if size * MEMORY_FACTOR > free:
        raise DatasetError(
            f"'{label}' is {human_size(size)} but only {human_size(free)} of memory is free, and reading a "
            f"table takes about {MEMORY_FACTOR} times its file size; use a smaller extract of the data or a "
            "machine with more memory."
        )


def parse_table_bytes(data: bytes, label: str) -> pd.DataFrame:
    """Bytes -> clean DataFrame (see :func:`read_table_file`).

    A plain UTF-8 file is read by Arrow's multi-threaded CSV reader (:func:`_read_fast`); anything
    else, or anything Arrow refuses (a row with a stray delimiter, a number column with a word after its
    first rows, another encoding), takes the careful path below, which finds the problem and names it.
    Both give the same table: ``tests/datasets/test_csv_fast_path.py`` compares them.
    """
    if not _CONTENT.search(data):  # (a search, not a strip: no copy of a large file)
        raise DatasetError(f"'{label}' is empty; choose a CSV file with a header line and data rows.")
    if data.startswith(b"PAR1"):
        return _read_parquet(data, label)
    fast = _read_fast(data, label)
    if fast is not None:
        return _finish(fast, label)
    return _read_careful(data, label)


def _read_careful(data: bytes, label: str) -> pd.DataFrame:
    """The careful path: decode the whole text, check every row's field count, then let pandas read."""
    text, encoding = decode_text(data, label)
    head = text[: SNIFF_CHARS + 1].replace("\r\n", "\n").replace("\r", "\n")
    hint = _SEP_HINT.match(head)
    if hint:  # Excel's "sep=;" first line names the delimiter
        head = head[hint.end() :]
    delimiter, records = sniff_delimiter(head, label, forced=hint.group(1) if hint else None)
    header, style = records[0], number_style(records[1:], delimiter)
    if len(header) > MAX_COLUMNS:
        raise DatasetError(
            f"'{label}' has {len(header):,} columns; the studio handles at most {MAX_COLUMNS:,}, "
            "so keep the columns you need and save again."
        )
    skip = 1 if hint else 0
    check_field_counts(data, text, encoding, delimiter, header, label, skip_lines=skip)
    del text  # pandas decodes the bytes itself; no need to hold a second copy of the file
    placeholders = [f"__c{i}" for i in range(len(header))]
    try:
        df = pd.read_csv(
            io.BytesIO(data),
            encoding=encoding,
            sep=delimiter,
            skiprows=skip,
            header=0,
            names=placeholders,
            index_col=False,
            skipinitialspace=True,
            low_memory=False,
            quotechar='"',
            decimal="," if style == "decimal" else ".",
        )
    except (pd.errors.ParserError, ValueError, OverflowError) as err:
        unclosed = re.search(r"EOF inside string starting at row (\d+)", str(err))
        if unclosed:
            raise DatasetError(
                f"'{label}' has a quote (\") that is never closed, in the row near line "
                f"{int(unclosed.group(1)) + 1 + skip}; close or remove it and save again."
            ) from None
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DatasetError(f"'{label}' could not be read as a table ({reason}).") from None
    return _finish((df, header, style), label)


def _finish(read: tuple[pd.DataFrame, list[str], str], label: str) -> pd.DataFrame:
    """What both paths do after reading: name the columns, drop empty ones and rows, turn text that
    holds numbers into numbers, and numbers too large for training into missing values."""
    df, header, style = read
    df = _drop_empty_unnamed(df, header)
    if not any(not df[column].hasnans for column in df.columns):  # else no row can be all missing
        df = df.dropna(how="all").reset_index(drop=True)
    if df.empty:
        raise DatasetError(f"'{label}' has a header line but no data rows; add rows below the header.")
    df = convert_text_columns(df, numbers=style)
    out_of_range_to_missing(df)
    return df


# Cells pandas reads as missing by default (its ``na_values``); Arrow's default list lacks a few of them.
PANDAS_MISSING = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip
FAST_PREFIX_BYTES = 1 << 20


def _read_fast(data: bytes, label: str) -> tuple[pd.DataFrame, list[str], str] | None:
    """Read a plain UTF-8 CSV with Arrow's CSV reader (both cores, no second copy of the text), or
    ``None`` when the file needs the careful path: another encoding, a ``sep=`` line, a header that
    spans lines or starts after blank lines, or anything Arrow refuses.

    Arrow reads dates and times as such where pandas keeps their text (and the profile then judges
    them), so columns Arrow would read as dates or times are read as text, as pandas does."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:8192]:
        return None
    if any(data.startswith(magic) for magic, _ in _BINARY_SIGNATURES):
        return None
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    body = memoryview(data)[start:]  # (a view: no copy of the file)
    try:
        head = codecs.getincrementaldecoder("utf-8")().decode(body[:FAST_PREFIX_BYTES], final=False)
    except UnicodeDecodeError:
        return None
    if _too_many_controls(head) or head[:1] in ("\n", "\r") or _SEP_HINT.match(head):
        return None
    head = head[: SNIFF_CHARS + 1].replace("\r\n", "\n").replace("\r", "\n")
    try:
        delimiter, records = sniff_delimiter(head, label)
    except DatasetError:
        return None  # the careful path says what is wrong
    header, style = records[0], number_style(records[1:], delimiter)
    if len(header) > MAX_COLUMNS or any("\n" in cell or "\r" in cell for cell in header):
        return None
    quoted = data.find(b'"', start) >= 0  # (finding one is ten times cheaper than counting them all)
    if quoted and data.count(b'"', start) % 2:
        return None  # a quote never closed: Arrow would read the rest of the file into one cell
    placeholders = [f"__c{i}" for i in range(len(header))]
    read_options = arrow_csv.ReadOptions(column_names=placeholders, skip_rows=1)
    parse_options = arrow_csv.ParseOptions(
        delimiter=delimiter, quote_char='"', newlines_in_values=quoted, ignore_empty_lines=True
    )

    def convert(column_types: dict[str, Any]) -> Any:
        return arrow_csv.ConvertOptions(
            column_types=column_types,
            null_values=PANDAS_MISSING,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            true_values=["True", "TRUE", "true"],
            false_values=["False", "FALSE", "false"],
            decimal_point="," if style == "decimal" else ".",
        )

    try:
        # Arrow guesses each column's type from the first block: read that block alone to learn which
        # columns it takes for dates or times, then read the whole file with those kept as text.
        with arrow_csv.open_csv(  # (a streaming reader: it parses the first block only, for its schema)
            pa.py_buffer(body),
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert({}),
        ) as first_block:
            schema = first_block.schema
        as_text = {field.name: pa.string() for field in schema if pa.types.is_temporal(field.type)}
        table = arrow_csv.read_csv(
            pa.py_buffer(body),
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert(as_text),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError):
        return None
    if any(not _plain_type(field.type) for field in table.schema):
        return None
    for index, field in enumerate(table.schema):
        if pa.types.is_null(field.type):  # an empty column: pandas reads it as floats, all missing
            table = table.set_column(index, field.name, table.column(index).cast(pa.float64()))
    return table.to_pandas(self_destruct=True, split_blocks=True), header, style


def _plain_type(arrow_type: Any) -> bool:
    """A column type the careful path also produces (numbers, yes/no, text, or all missing)."""
    import pyarrow as pa

    return bool(
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_boolean(arrow_type)
        or pa.types.is_string(arrow_type)
        or pa.types.is_null(arrow_type)
    )


def out_of_range_to_missing(df: pd.DataFrame) -> dict[str, int]:
    """Turn numbers too large for 32-bit floats (beyond about ±3.4e38, and infinities) into missing
    values, in place: training would turn them into infinities and its results into NaN.

    Returns ``{column: count}`` for the columns that had any, also kept in
    ``df.attrs["out_of_range_values"]`` as ``[column, count]`` pairs for the profile's warning."""
    found: dict[str, int] = {}
    for column in df.columns:
        series = df[column]
        if not pd.api.types.is_float_dtype(series.dtype):
            continue  # integers cannot be infinite, and int64 stays exactly representable as float64
        values = series.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = np.abs(values) > FLOAT32_MAX
        count = int(bad.sum())
        if count:
            df[column] = series.mask(bad)
            found[str(column)] = count
    if found:
        df.attrs[OUT_OF_RANGE_ATTR] = [[column, count] for column, count in found.items()]
    return found


def decode_text(data: bytes, label: str) -> tuple[str, str]:
    """Decode as UTF-8 (BOM stripped), UTF-16 with a BOM, else cp1252 / latin-1; refuse binary files.

    Returns the text and the encoding's name (as pandas and Python spell it).
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text" export
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise DatasetError(_binary_message(label, data)) from None
    if b"\x00" in data[:8192] or any(data.startswith(magic) for magic, _ in _BINARY_SIGNATURES):
        raise DatasetError(_binary_message(label, data))
    text, encoding = "", "latin-1"
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if _too_many_controls(text):
        raise DatasetError(_binary_message(label, data))
    return text, encoding


def _too_many_controls(text: str) -> bool:
    """Whether the start of a decoded file holds the control characters of a binary file."""
    sample = text[:100_000]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\x0c")
    return controls > max(2, len(sample) // 100)


def _binary_message(label: str, data: bytes) -> str:
    guess = next((what for magic, what in _BINARY_SIGNATURES if data.startswith(magic)), "an Excel workbook?")
    return (
        f"'{label}' looks like a binary file ({guess}), not CSV text; open it in your spreadsheet program "
        "and save it as CSV."
    )


def _records(text: str, delimiter: str) -> list[list[str]]:
    """The first non-blank records of a text sample, parsed with quotes respected."""
    records: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text), delimiter=delimiter, quotechar='"'):
            if row and any(cell.strip() for cell in row):
                records.append(row)
                if len(records) > SNIFF_RECORDS:
                    break
    except csv.Error:
        pass  # a sample cut inside a quoted field; what was read is enough to judge
    return records


def _named_width(header: list[str]) -> int:
    """Header cells up to the last one with a name (a trailing delimiter adds an empty cell)."""
    width = len(header)
    while width > 1 and not header[width - 1].strip():
        width -= 1
    return width


def _fits(row: list[str], expected: int, minimum: int | None = None) -> bool:
    """Same field count as the header, allowing empty fields after trailing delimiters (on the row, or on
    the header: then a row may stop after the last named column)."""
    if len(row) > expected:
        return not any(cell.strip() for cell in row[expected:])
    return (minimum or expected) <= len(row)


def sniff_delimiter(text: str, label: str, forced: str | None = None) -> tuple[str, list[list[str]]]:
    """Pick the delimiter whose field counts agree best with the header; return it and the first records
    (the header first) as split by it.

    Each candidate parses the first lines (quotes respected) and scores the share of rows whose field
    count matches the header's, then the number of fields.
    """
    truncated = len(text) > SNIFF_CHARS
    sample = text[: text.rfind("\n", 0, SNIFF_CHARS) + 1] if truncated else text
    if truncated and not sample:
        sample = text[:SNIFF_CHARS]
    best: tuple[float, int, int] | None = None
    choice: tuple[str, list[str]] | None = None
    n_records = 0
    candidates = [forced] if forced else list(DELIMITERS)
    for priority, delimiter in enumerate(candidates):
        records = _records(sample, delimiter)
        if truncated and len(records) > 2:
            records = records[:-1]  # the last one may be cut short
        n_records = max(n_records, len(records))
        if not records or len(records[0]) < 2:
            continue
        header, rows = records[0], records[1:]
        width = _named_width(header)
        consistency = sum(_fits(row, len(header), width) for row in rows) / len(rows) if rows else 1.0
        score = (consistency, len(header), -priority)
        if best is None or score > best:
            best, choice = score, (delimiter, records)
    if n_records <= 1 and not truncated:
        raise DatasetError(f"'{label}' has a header line but no data rows; add rows below the header.")
    if choice is None:
        tried = ", ".join(
            f"{name} ({d!r})" if d == "\t" else f"{name} ('{d}')" for d, name in DELIMITERS.items()
        )
        raise DatasetError(
            f"'{label}' has only one column: none of the delimiters tried ({tried}) splits its header "
            "line, and a training table needs at least two columns, so save it with one of those."
        )
    return choice


def check_field_counts(
    data: bytes, text: str, encoding: str, delimiter: str, header: list[str], label: str, skip_lines: int = 0
) -> None:
    """Every row must have as many fields as the header; name the (physical) line of the first that does not.

    Without quotes, fields are counted on the file's bytes at once (the delimiters and line breaks are
    single ASCII bytes in every encoding read here but UTF-16); with quotes, the ``csv`` module reads the
    text, since it knows delimiters and line breaks inside quotes.
    """
    newline = "\n" if "\n" in text else "\r"
    width = (len(header), _named_width(header))
    if '"' in text:
        bad = _bad_rows_quoted(text, newline, delimiter, width, label, skip_lines)
    elif encoding == "utf-16":
        bad = _bad_rows_plain(text.encode("utf-8"), "utf-8", newline, delimiter, width, skip_lines)
    else:
        bad = _bad_rows_plain(data, encoding, newline, delimiter, width, skip_lines)
    expected = width[0]
    if bad:
        number, n = bad[0]
        more = f" ({len(bad) - 1:,} more {'row has' if len(bad) == 2 else 'rows have'} the same problem)"
        raise DatasetError(
            f"Line {number} of '{label}' has {n} field{'' if n == 1 else 's'} but the header has {expected}"
            f"{more if len(bad) > 1 else ''}; a stray or missing delimiter in that row is the usual cause, "
            "so fix it and save again."
        )


def _bad_rows_plain(
    data: bytes, encoding: str, newline: str, delimiter: str, width: tuple[int, int], skip_lines: int
) -> list[tuple[int, int]]:
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.append(np.flatnonzero(raw == ord(newline)), raw.size)
    starts = np.concatenate(([0], ends[:-1] + 1))
    delimiters = np.flatnonzero(raw == ord(delimiter))
    fields = np.searchsorted(delimiters, ends) - np.searchsorted(delimiters, starts) + 1
    header = _first_content_line(raw, starts, ends, skip_lines)
    bad: list[tuple[int, int]] = []
    for index in np.flatnonzero(fields != width[0]):
        if index <= header:
            continue
        line = raw[starts[index] : ends[index]].tobytes().decode(encoding)
        if line.strip() and not _fits(line.split(delimiter), *width):
            bad.append((int(index) + 1, int(fields[index])))
    return bad


def _first_content_line(raw: np.ndarray, starts: np.ndarray, ends: np.ndarray, skip_lines: int) -> int:
    for index in range(skip_lines, len(starts)):
        if raw[starts[index] : ends[index]].tobytes().strip():
            return index
    return -1


def _lines(text: str, newline: str) -> Iterator[str]:
    """The lines of a text, line breaks kept, without building a list of them all."""
    start, size = 0, len(text)
    while start < size:
        end = text.find(newline, start)
        if end < 0:
            yield text[start:]
            return
        yield text[start : end + 1]
        start = end + 1


def _bad_rows_quoted(
    text: str, newline: str, delimiter: str, width: tuple[int, int], label: str, skip_lines: int
) -> list[tuple[int, int]]:
    lines = _lines(text, newline)
    for _ in range(skip_lines):
        next(lines, None)
    reader = csv.reader(lines, delimiter=delimiter, quotechar='"')
    bad: list[tuple[int, int]] = []
    start, header_seen = skip_lines + 1, False
    try:
        for row in reader:
            if row and any(cell.strip() for cell in row):
                if header_seen and not _fits(row, *width):
                    bad.append((start, len(row)))
                header_seen = True
            start = skip_lines + reader.line_num + 1
    except csv.Error as err:
        raise DatasetError(
            f"'{label}' cannot be read near line {start} ({err}); check the quotes in that row."
        ) from None
    return bad


def _drop_empty_unnamed(df: pd.DataFrame, header: list[str]) -> pd.DataFrame:
    """Spreadsheets save trailing empty columns with empty headers; they carry nothing."""
    empty = [
        placeholder
        for placeholder, name in zip(df.columns, header, strict=False)
        if not str(name).strip() and df[placeholder].isna().all()
    ]
    names = [name for placeholder, name in zip(df.columns, header, strict=False) if placeholder not in empty]
    df = df.drop(columns=empty)
    return clean_columns(df, names)


def clean_columns(df: pd.DataFrame, names: list[object] | None = None) -> pd.DataFrame:
    """Column names as stripped text, empty ones named ``unnamed_N`` and duplicates ``name_2``.

    Renames go into ``df.attrs["renamed_columns"]`` as ``[original, new]`` pairs (original ``""`` when the
    header cell was empty).
    """
    originals = [str(name) for name in (names if names is not None else df.columns)]
    cleaned: list[str] = []
    renamed: list[list[str]] = []
    seen: set[str] = set()
    for position, original in enumerate(originals, start=1):
        base = original.replace("\ufeff", "").strip() or f"unnamed_{position}"
        name, suffix = base, 2
        while name in seen:
            name, suffix = f"{base}_{suffix}", suffix + 1
        seen.add(name)
        cleaned.append(name)
        if name != original.strip():
            renamed.append([original.strip(), name])
    df = df.copy() if names is None else df
    df.columns = cleaned
    df.attrs["renamed_columns"] = renamed
    return df


def _read_parquet(data: bytes, label: str) -> pd.DataFrame:
    try:
        df = pd.read_parquet(io.BytesIO(data))
    except Exception:  # pyarrow raises many types for corrupt files
        raise DatasetError(
            f"'{label}' looks like a Parquet file but cannot be read; save it again."
        ) from None
    if df.empty:
        raise DatasetError(f"'{label}' has columns but no data rows; add rows and save again.")
    df = clean_columns(df.reset_index(drop=True))
    out_of_range_to_missing(df)
    return df


def convert_text_columns(df: pd.DataFrame, numbers: str = "auto") -> pd.DataFrame:
    """Strip text cells and turn columns that hold numbers written as text into numbers.

    ``numbers`` says how to read a comma inside a number: ``"decimal"`` (``3,14`` and ``1.234,5``, what
    semicolon files from spreadsheets hold), ``"thousands"`` (``1,234.5``, quoted in comma files) or
    ``"auto"`` (thousands when every comma is followed by groups of three digits, else decimal).
    Missing-value markers like ``?`` or ``-`` in a number column become missing.
    """
    for column in df.columns:
        series = df[column]
        if not (pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)):
            continue
        stripped = series.astype("str").str.strip().where(series.notna())
        stripped = stripped.mask(stripped == "")
        number = _as_number(stripped, numbers)
        df[column] = number if number is not None else stripped
    return df


def number_style(rows: list[list[str]], delimiter: str) -> str:
    """How this file writes a comma inside a number: ``decimal``, ``thousands`` or ``auto`` (per column).

    Comma files can only hold thousands commas (quoted); semicolon files are what spreadsheets save in
    decimal-comma countries; tab and pipe files are judged by the numbers in their first rows.
    """
    if delimiter == ",":
        return "thousands"
    if delimiter == ";":
        return "decimal"
    decimal = thousands = 0
    for row in rows:
        for cell in row:
            cell = cell.strip()
            if "," not in cell:
                continue
            if _THOUSANDS_COMMA.match(cell):
                thousands += 1
            elif _DECIMAL_COMMA.match(cell):
                decimal += 1
    if decimal:
        return "decimal"
    return "thousands" if thousands else "auto"


_COMMA_PATTERNS = {
    "decimal": (_DECIMAL_COMMA,),
    "thousands": (_THOUSANDS_COMMA,),
    "auto": (_DECIMAL_COMMA, _THOUSANDS_COMMA),
}


def _is_missing_marker(value: str) -> bool:
    return value.lower() in MISSING_MARKERS


def _as_number(series: pd.Series, style: str) -> pd.Series | None:
    present = series.dropna()
    if present.empty:
        return None
    sample = present.head(200)  # most text columns are ruled out here, cheaply
    unparsed = sample[pd.to_numeric(sample, errors="coerce").isna()]
    patterns = _COMMA_PATTERNS[style]
    if any(not (_is_missing_marker(v) or any(p.match(v) for p in patterns)) for v in unparsed):
        return None
    values = present
    has_comma = present.str.contains(",", regex=False)
    if has_comma.any():
        commas = present[has_comma]
        if style == "auto":
            style = "thousands" if commas.str.fullmatch(_THOUSANDS_COMMA.pattern).all() else "decimal"
        if style == "thousands":
            fixed = commas.where(commas.str.fullmatch(_THOUSANDS_COMMA.pattern)).str.replace(
                ",", "", regex=False
            )
        else:
            fixed = commas
            for separator in (".", " ", "\u00a0", "\u202f"):  # thousands separators (vectorised, no regex)
                fixed = fixed.str.replace(separator, "", regex=False)
            fixed = fixed.str.replace(",", ".", regex=False)
        values = present.copy()
        values[has_comma] = fixed
    numbers = pd.to_numeric(values, errors="coerce")
    failed = present[numbers.isna()]
    if any(not _is_missing_marker(value) for value in failed.unique()):
        return None
    return numbers.reindex(series.index) if numbers.notna().any() else None
