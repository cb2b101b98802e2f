"""Unzipping is bounded by the bytes an entry actually produces, not by the sizes its zip declares; and a
data set is refused before anything is written when the disk has no room for it.

The lying zip: 300 MB of zeros packed to ~300 KB, with both size fields of that entry (local header and
central directory) patched to 1,000,000. Its headers pass every check on the directory (ratio 1:1, sizes
tiny), so only counting the real bytes stops it. Ingest runs in a child process (the CLI, and an upload's
bytes as the Data page passes them) whose peak memory is read with ``os.wait4``.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zipfile
from collections import namedtuple
from pathlib import Path

import pytest

from studio.core.errors import DatasetError
from studio.data import ZipLimits, add_data_file, add_image_zip, list_datasets, store
from studio.modalities.image.ingest import _stream_member
from tests.images.test_ingest import stored_files, two_classes

ROOT = Path(__file__).resolve().parents[2]
ZEROS = 300 * 2**20
DECLARED = 1_000_000
PEAK_LIMIT_MB = 150
LIE = "unpacks to more than the 976.6 KB its zip directory declares"


def lying_zip(path: Path, zeros: int = ZEROS, declared: int = DECLARED) -> Path:
    """Two real classes plus ``red/zeros.png``: ``zeros`` bytes of zeros whose sizes say ``declared``."""
    chunk = bytes(2**20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in two_classes(3).items():
            zf.writestr(name, data)
        with zf.open("red/zeros.png", "w") as out:
            for _ in range(zeros // len(chunk)):
                out.write(chunk)
    data = bytearray(path.read_bytes())
    name = b"red/zeros.png"
    for signature, sizes_at, name_at in ((b"PK\x03\x04", 18, 30), (b"PK\x01\x02", 20, 46)):
        length_at = 26 if signature == b"PK\x03\x04" else 28
        pos = data.find(signature)
        while pos >= 0:
            (length,) = struct.unpack_from("<H", data, pos + length_at)
            if data[pos + name_at : pos + name_at + length] == name:
                struct.pack_into("<II", data, pos + sizes_at, declared, declared)  # packed, unpacked
            pos = data.find(signature, pos + 4)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = lying_zip(tmp_path_factory.mktemp("bomb") / "bomb.zip")
    assert path.stat().st_size < 2**20
    with zipfile.ZipFile(path) as zf:
        member = zf.getinfo("red/zeros.png")
    assert (member.file_size, member.compress_size) == (DECLARED, DECLARED)
    return path


UPLOAD = """
import sys
from studio.data import add_data_file
from studio.core.errors import DatasetError
data = open(sys.argv[1], "rb").read()  # the page passes the upload's bytes, as st.file_uploader holds them
try:
    add_data_file(data, filename="bomb.zip", max_bytes=200 * 2**20)
except DatasetError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
"""


PEAK = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""
# The child's peak is read by a tiny wrapper (python -S): Linux counts the memory of the process a child is
# forked from in the child's peak, so measured straight from pytest (hundreds of MB) it would say little.


@pytest.mark.parametrize("way", ["cli", "upload"])
def test_a_zip_that_lies_about_its_sizes_stops_at_the_limit_with_little_memory(
    studio_home: Path, tmp_path: Path, bomb: Path, way: str
) -> None:
    command = (
        [sys.executable, "-m", "studio", "datasets", "add", str(bomb)]
        if way == "cli"
        else [sys.executable, "-c", UPLOAD, str(bomb)]
    )
    env = dict(os.environ, STUDIO_HOME=str(studio_home), PYTHONPATH=str(ROOT))
    err_file = tmp_path / "stderr.txt"
    with open(err_file, "wb") as err:
        done = subprocess.run(
            [sys.executable, "-S", "-c", PEAK, *command],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    code, peak_kb = map(int, done.stdout.split())
    peak_mb = peak_kb / 1024  # Linux: kilobytes
    message = err_file.read_text()
    print(f"{way}: peak RSS {peak_mb:.0f} MB; {message.strip()}")
    assert code == 2, message
    assert message.count("\n") == 1 and LIE in message and "'bomb.zip' was refused" in message, message
    assert peak_mb < PEAK_LIMIT_MB, f"ingest peaked at {peak_mb:.0f} MB"
    assert not [p for p in stored_files(studio_home) if "datasets" in p.parts], "nothing may be kept"


def test_lying_zip_in_process_keeps_nothing(studio_home: Path, bomb: Path) -> None:
    with pytest.raises(DatasetError, match=LIE):
        add_image_zip(bomb)
    assert list_datasets() == [] and not os.listdir(studio_home / "datasets")


@pytest.mark.parametrize(
    ("limits", "done", "phrase"),
    [
        (ZipLimits(max_entry_bytes=1000), 0, "unpacks to more than 1,000 bytes, the limit per file"),
        (
            ZipLimits(max_total_bytes=10_000),
            9_500,
            "the zip unpacks to more than 9.8 KB, the total size limit",
        ),
    ],
)
def test_each_budget_counts_real_bytes(tmp_path: Path, limits: ZipLimits, done: int, phrase: str) -> None:
    """The per-file and total budgets stop an entry by the bytes it produces (checked here directly:
    the directory checks already refuse an honest zip that declares too much)."""
    path = tmp_path / "plain.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("red/a.png", bytes(5000))
    with zipfile.ZipFile(path) as zf, pytest.raises(DatasetError, match=phrase):
        _stream_member(zf, zf.getinfo("red/a.png"), tmp_path / "out", "plain.zip", limits, done)


FakeUsage = namedtuple("FakeUsage", "total used free")


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk holding STUDIO_HOME reports 20 MB free."""
    monkeypatch.setattr(
        store.shutil, "disk_usage", lambda path: FakeUsage(10 * 2**30, 10 * 2**30, 20 * 2**20)
    )


def test_a_zip_is_refused_before_writing_when_the_disk_is_full(studio_home, tmp_path, full_disk) -> None:
    path = tmp_path / "pictures.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in two_classes(3).items():
            zf.writestr(name, data)
    with pytest.raises(
        DatasetError, match=r"not enough free disk space to add 'pictures.zip'.*only 20.0 MB is free"
    ):
        add_data_file(path)
    assert list_datasets() == [] and not os.listdir(studio_home / "datasets")


def test_a_csv_is_refused_before_writing_when_the_disk_is_full(studio_home, tmp_path, full_disk) -> None:
    path = tmp_path / "wine.csv"
    path.write_text("a,b,label\n" + "1,2,x\n3,4,y\n" * 50, encoding="utf-8")
    with pytest.raises(
        DatasetError, match=r"not enough free disk space to add 'wine.csv'.*nothing was written"
    ):
        add_data_file(path)
    assert list_datasets() == [] and not os.listdir(studio_home / "datasets")


def test_the_cli_says_so_in_one_line(studio_home, tmp_path, full_disk, capsys) -> None:
    from studio.cli import main

    path = tmp_path / "wine.csv"
    path.write_text("a,b,label\n1,2,x\n3,4,y\n", encoding="utf-8")
    assert main(["datasets", "add", str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: There is not enough free disk space to add 'wine.csv'")
        and err.count("\n") == 1
    )


PREDICT_UPLOAD = """
import sys
from studio.core.errors import DatasetError
from studio.app.runs_view import pictures_from_uploads
data = open(sys.argv[1], "rb").read()  # the Predict page passes the uploads' bytes
try:
    pictures_from_uploads([("bomb.zip", data)])
except DatasetError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
"""


def test_predicting_from_a_lying_zip_stops_at_the_limit_with_little_memory(
    studio_home: Path, tmp_path: Path, bomb: Path
) -> None:
    """The Predict page opens uploaded zips in the Streamlit process: the same counted reader bounds it."""
    env = dict(os.environ, STUDIO_HOME=str(studio_home), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-S", "-c", PEAK, sys.executable, "-c", PREDICT_UPLOAD, str(bomb)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    code, peak_kb = map(int, done.stdout.split())
    print(f"predict upload: peak RSS {peak_kb / 1024:.0f} MB; {done.stderr.strip()}")
    assert code == 2 and LIE in done.stderr, done.stderr
    assert peak_kb / 1024 < PEAK_LIMIT_MB


def test_predicting_from_a_lying_zip_on_the_cli_is_refused(bomb: Path) -> None:
    from studio.core.errors import BundleError
    from studio.modalities.image.modality import pictures_in_zip as _pictures_in_zip

    with pytest.raises(BundleError, match=LIE):
        _pictures_in_zip(bomb)
