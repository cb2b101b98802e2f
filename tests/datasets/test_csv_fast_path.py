"""The fast CSV path (Arrow's reader) gives exactly the table the careful path (pandas) gives, and
steps aside for every file it cannot read the same way."""

from __future__ import annotations

import pandas as pd
import pytest

from studio.core.errors import DatasetError
from studio.modalities.tabular import ingest as csv_ingest

# Files the fast path reads itself: the result must equal the careful path's, column types included.
FAST = {
    "numbers": b"a,b,label\n1,2.5,x\n3,,y\n5,7.25,x\n",
    "missing-markers": b"a,b,c\n1,NA,x\n2,null,\n3,4,None\n4,5,<NA>\n",
    "question-marks": b"a,b\n1,?\n2,3\n3,-\n",
    "spaces": b"a, b, c\n1, 2.5, red\n3, 4.5 , blue \n",
    "booleans": b"a,flag,yn\n1,True,yes\n2,false,no\n3,TRUE,yes\n",
    "dates": b"when,at,stamp,v\n2020-01-31,12:30,2020-01-31 10:00:00,1\n2021-02-03,13:45,2021-02-03 11:00,2\n",
    "bom": b"\xef\xbb\xbfa,b\n1,2\n3,4\n",
    "quoted": b'name,note,v\n"Smith, J","said ""hi""\nthen left",1\n"Doe",plain,2\n',
    "thousands": b'a,b\n"1,234.5",1\n"2,000",2\n',
    "semicolon-decimal": b"a;b;c\n1,5;2;x\n3,25;4;y\n",
    "semicolon-thousands": b"a;b\n1.234,5;1\n2.000,25;2\n",
    "tab": b"a\tb\n1\t2\n3\t4\n",
    "duplicate-names": b"a,a,,b\n1,2,3,4\n5,6,7,8\n",
    "empty-rows": b"a,b\n1,2\n,\n3,4\n\n",
    "crlf": b"a,b\r\n1,2\r\n3,4\r\n",
    "huge-numbers": b"x,y\n1e300,1\ninf,2\n-1e39,3\n4,4\n",
    "all-missing-column": b"a,b,c\n1,,x\n2,,y\n",
    "unicode": "ville,été\nZürich,1\nSão Paulo,2\n".encode(),
    "big-ints": b"a,b\n9223372036854775807,1\n1,2\n",
}
# Files that need the careful path (it names what is wrong, or reads what Arrow does not).
CAREFUL = {
    "latin-1": "ville,v\nZürich,1\n".encode("latin-1"),
    "utf-16": "a,b\n1,2\n".encode("utf-16"),
    "sep-line": b"sep=;\na;b\n1;2\n",
    "unclosed-quote": b'a,b\n1,2\n3,"x\n4,5\n',
    "too-many-fields": b"a,b,c\n1,2,3\n4,5,6,7\n",
    "leading-blank-line": b"\na,b\n1,2\n",
}


def careful(data: bytes) -> pd.DataFrame:
    return csv_ingest._read_careful(data, "t.csv")


@pytest.mark.parametrize("name", sorted(FAST))
def test_fast_path_reads_the_same_table_as_the_careful_path(name: str) -> None:
    data = FAST[name]
    assert csv_ingest._read_fast(data, "t.csv") is not None, "the fast path stepped aside"
    fast = csv_ingest.parse_table_bytes(data, "t.csv")
    expected = careful(data)
    pd.testing.assert_frame_equal(fast, expected, check_exact=True)
    assert fast.attrs == expected.attrs


@pytest.mark.parametrize("name", sorted(CAREFUL))
def test_files_the_fast_path_cannot_read_the_same_way_go_the_careful_way(name: str) -> None:
    data = CAREFUL[name]
    assert csv_ingest._read_fast(data, "t.csv") is None
    try:
        expected = careful(data)
    except DatasetError as err:
        with pytest.raises(DatasetError) as again:
            csv_ingest.parse_table_bytes(data, "t.csv")
        assert str(again.value) == str(err)
    else:
        pd.testing.assert_frame_equal(csv_ingest.parse_table_bytes(data, "t.csv"), expected)


def test_a_word_after_the_first_block_of_a_number_column_is_read_like_pandas_reads_it() -> None:
    """Arrow guesses a column's type from its first block and refuses a later cell that does not fit;
    the careful path then reads it, so the column is text (or numbers with a missing marker) as before."""
    rows = "".join(f"{i},{i * 0.5}\n" for i in range(60_000))
    data = f"a,b\n{rows}7,n/a\n8,abc\n".encode()
    df = csv_ingest.parse_table_bytes(data, "t.csv")
    pd.testing.assert_frame_equal(df, careful(data))
    assert df["b"].iloc[-1] == "abc"
