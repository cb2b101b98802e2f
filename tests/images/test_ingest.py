"""Image zips: layouts, every unsafe or broken archive, odd picture modes, duplicates and label
conflicts, the profile's warnings, and the store (list, re-add, delete) with the CLI."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.errors import DatasetError
from studio.core.image_io import open_image
from studio.data import (
    KIND_IMAGES,
    ZipLimits,
    add_data_file,
    add_image_zip,
    get_dataset,
    image_paths,
    list_datasets,
    load_profile,
    load_table,
    resolve_dataset,
)
from studio.jobs import delete_dataset
from tests.images.conftest import CLASSES, encode, make_zip, picture


def write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def two_classes(n: int = 12, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    return {f"{kind}/{i}.png": encode(picture(kind, rng)) for kind in ("red", "blue") for i in range(n)}


def stored_files(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file()]


# --------------------------------------------------------------------------- layouts and profile
@pytest.mark.parametrize("top", [None, "shapes", "my data/shapes"])
def test_class_folders_with_or_without_top_folders(studio_home, tmp_path, top) -> None:
    info = add_image_zip(make_zip(tmp_path / "shapes.zip", per_class=12, top=top))
    assert info.kind == KIND_IMAGES and info.n_rows == 36 and info.name == "shapes"
    profile = load_profile(info.id)
    assert [c["name"] for c in profile["classes"]] == sorted(CLASSES)
    assert [c["count"] for c in profile["classes"]] == [12, 12, 12]
    assert profile["suggested_target"] == "label" and profile["suggested_task"] == "image_classification"
    assert profile["sizes"]["width"] == {"min": 24, "median": 24.0, "max": 24}
    assert profile["modes"] == {"RGB": 36} and profile["formats"] == {"PNG": 36}
    for cls in profile["classes"]:
        assert len(cls["samples"]) == 8
        thumb = info.path / cls["samples"][0]
        assert thumb.is_file() and Image.open(thumb).size == (24, 24)
    table = load_table(info.id)
    assert list(table.columns[:2]) == ["image", "label"] and len(table) == 36
    paths = image_paths(info.id)
    assert all(Path(p).is_file() and Path(p).is_relative_to(info.path) for p in paths["path"])
    codes = {w["code"] for w in profile["warnings"]}
    assert "tiny_images" in codes and "few_images" not in codes


def test_warnings_in_plain_words(studio_home, tmp_path) -> None:
    rng = np.random.default_rng(3)
    entries = {f"big/{i}.png": encode(picture("red", rng, size=40)) for i in range(40)}
    entries |= {f"small/{i}.png": encode(picture("blue", rng, size=40)) for i in range(4)}
    info = add_image_zip(write_zip(tmp_path / "uneven.zip", entries))
    warnings = {w["code"]: w for w in load_profile(info.id)["warnings"]}
    assert "'small' (4)" in warnings["few_images"]["message"]
    assert "'big' has 40 pictures, 'small' only 4" in warnings["imbalance"]["message"]
    assert "tiny_images" not in warnings
    assert all(w["message"] and w["action"] and "\n" not in w["message"] for w in warnings.values())


def test_junk_broken_and_stray_files_are_skipped_with_reasons(studio_home, tmp_path) -> None:
    good = two_classes()
    png = good["red/0.png"]
    entries = {
        **good,
        "__MACOSX/red/._0.png": b"\x00\x05\x16\x07 resource fork",
        "red/.DS_Store": b"\x00\x00\x00\x01Bud1",
        "blue/Thumbs.db": b"\xd0\xcf\x11\xe0",
        "red/cut.png": png[: len(png) // 2],
        "red/garbage.jpg": b"\xff\xd8\xff\xe0 this is not really a jpeg",
        "blue/notes.txt": b"just words",
        "readme.md": b"# my pictures",
    }
    info = add_image_zip(write_zip(tmp_path / "messy.zip", entries))
    profile = load_profile(info.id)
    assert profile["n_images"] == 24
    reasons = {s["file"]: s["reason"] for s in profile["skipped"]}
    assert set(reasons) == {
        "__MACOSX/red/._0.png",
        "red/.DS_Store",
        "blue/Thumbs.db",
        "red/cut.png",
        "red/garbage.jpg",
        "blue/notes.txt",
        "readme.md",
    }
    assert reasons["blue/Thumbs.db"] == "system file, not a picture"
    assert "damaged or cut short" in reasons["red/cut.png"]
    assert "not a picture" in reasons["blue/notes.txt"]
    assert "not inside a class folder" in reasons["readme.md"]
    assert (
        "7 file(s) in the zip were skipped"
        in {w["code"]: w for w in profile["warnings"]}["skipped_files"]["message"]
    )


def test_duplicates_are_kept_once_and_label_conflicts_left_out(studio_home, tmp_path) -> None:
    entries = two_classes()
    entries["red/copy-of-0.png"] = entries["red/0.png"]
    entries["red/another-copy.png"] = entries["red/0.png"]
    entries["blue/which-is-it.png"] = entries["red/1.png"]
    info = add_image_zip(write_zip(tmp_path / "dupes.zip", entries))
    profile = load_profile(info.id)
    assert profile["duplicates"] == [
        {"kept": "red/0.png", "copies": ["red/copy-of-0.png", "red/another-copy.png"], "label": "red"}
    ]
    assert profile["label_conflicts"] == [
        {"files": ["red/1.png", "blue/which-is-it.png"], "labels": ["blue", "red"]}
    ]
    sources = set(load_table(info.id)["source"])
    assert "red/0.png" in sources and "red/copy-of-0.png" not in sources
    assert "red/1.png" not in sources and "blue/which-is-it.png" not in sources
    assert {c["name"]: c["count"] for c in profile["classes"]} == {"blue": 12, "red": 11}
    assert len(list((info.path / "images").rglob("*.png"))) == 23  # dropped files are not kept on disk
    codes = {w["code"]: w["message"] for w in profile["warnings"]}
    assert "appear in more than one class" in codes["label_conflicts"]
    assert "2 picture(s) are exact copies" in codes["duplicates"]


# --------------------------------------------------------------------------- picture modes
def exif_rotated_jpeg() -> bytes:
    """A 40×20 picture whose EXIF says 'rotate 90° clockwise to display' (orientation 6): upright
    it is 20 wide and 40 high, red at the bottom (turning clockwise moves the right side down)."""
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, 20:] = (255, 0, 0)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def odd_pictures() -> dict[str, bytes]:
    gray = Image.fromarray(np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1)), mode="L")
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 16, 32))
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.paste(1, (0, 0, 16, 16))
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # red in CMYK
    sixteen = Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16))
    bilevel = Image.new("1", (32, 32), 1)
    la = Image.new("LA", (32, 32), (100, 255))
    return {
        "L": encode(gray),
        "RGBA": encode(rgba),
        "P": encode(palette, transparency=0),
        "CMYK": encode(cmyk, "JPEG"),
        "I;16": encode(sixteen),
        "1": encode(bilevel),
        "LA": encode(la),
        "EXIF": exif_rotated_jpeg(),
        "GIF": encode(Image.new("P", (32, 32), 3), "GIF"),
        "BMP": encode(Image.new("RGB", (32, 32), (1, 2, 3)), "BMP"),
        "WEBP": encode(Image.new("RGB", (32, 32), (9, 9, 9)), "WEBP"),
    }


def test_every_picture_mode_becomes_rgb(studio_home, tmp_path) -> None:
    pictures = odd_pictures()
    for name, data in pictures.items():
        image = open_image(data)
        assert image.mode == "RGB", name
    transparent = np.asarray(open_image(pictures["RGBA"]))
    assert tuple(transparent[0, 0]) == (0, 0, 255) and tuple(transparent[0, 31]) == (255, 255, 255)
    palette = np.asarray(open_image(pictures["P"]))
    assert tuple(palette[0, 0]) == (0, 255, 0) and tuple(palette[31, 31]) == (255, 255, 255)
    assert np.asarray(open_image(pictures["CMYK"]))[5, 5, 0] > 200
    sixteen = np.asarray(open_image(pictures["I;16"]))
    assert sixteen.max() > 200 and sixteen.min() < 5  # scaled to 8 bits, not clipped
    upright = open_image(pictures["EXIF"])
    assert upright.size == (20, 40)
    pixels = np.asarray(upright)
    assert pixels[35, 10, 0] > 200 and pixels[5, 10, 0] < 60
    entries = {f"odd/{name.replace(';', '')}.img": data for name, data in pictures.items()}
    entries |= {f"plain/{i}.png": encode(Image.new("RGB", (32, 32), (i, i, i))) for i in range(5)}
    info = add_image_zip(write_zip(tmp_path / "modes.zip", entries))
    profile = load_profile(info.id)
    assert profile["skipped"] == []
    assert {"L", "RGBA", "P", "CMYK", "1", "LA", "RGB"} <= set(profile["modes"])
    exif_row = load_table(info.id).set_index("source").loc["odd/EXIF.img"]
    assert (exif_row["width"], exif_row["height"]) == (20, 40)


# --------------------------------------------------------------------------- unsafe archives
def symlink_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in two_classes(4).items():
            zf.writestr(name, data)
        link = zipfile.ZipInfo("red/escape.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "../../../../etc/passwd")
    return path


@pytest.mark.parametrize(
    ("entry", "phrase"),
    [
        ("../escaped.png", "climbs out of its folder"),
        ("red/../../escaped.png", "climbs out of its folder"),
        ("/tmp/escaped.png", "an absolute path"),
        ("C:/escaped.png", "an absolute path"),
        ("red\\..\\..\\escaped.png", "climbs out of its folder"),
    ],
)
def test_paths_leaving_the_folder_are_refused(studio_home, tmp_path, entry, phrase) -> None:
    entries = {**two_classes(4), entry: encode(Image.new("RGB", (8, 8)))}
    with pytest.raises(DatasetError, match=phrase) as caught:
        add_image_zip(write_zip(tmp_path / "evil.zip", entries))
    message = str(caught.value)
    assert "was refused" in message and entry in message and "\n" not in message
    assert not list(tmp_path.rglob("escaped.png")) and not Path("/tmp/escaped.png").exists()
    assert list_datasets() == [] and stored_files(studio_home) == []


def test_symbolic_links_are_refused(studio_home, tmp_path) -> None:
    with pytest.raises(DatasetError, match="'red/escape.png' is a symbolic link"):
        add_image_zip(symlink_zip(tmp_path / "link.zip"))
    assert stored_files(studio_home) == []


def test_a_zip_bomb_is_refused_before_anything_is_written(studio_home, tmp_path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in two_classes(4).items():
            zf.writestr(name, data)
        zf.writestr("red/huge.png", bytes(200 * 2**20))  # 200 MB of zeros: ~200 KB packed
    assert bomb.stat().st_size < 2**20
    with pytest.raises(DatasetError, match=r"compressed [\d,]+:1, over the compression ratio limit of 100:1"):
        add_image_zip(bomb)
    assert sum(p.stat().st_size for p in stored_files(studio_home)) == 0


@pytest.mark.parametrize(
    ("limits", "phrase"),
    [
        (ZipLimits(max_entries=10), "holds 24 entries, over the limit of 10 entries"),
        (ZipLimits(max_total_bytes=2000), "over the total size limit"),
        (ZipLimits(max_entry_bytes=100), "over the limit of 100 bytes per file"),
        (ZipLimits(max_ratio=1.5, ratio_floor_bytes=10_000), "compression ratio limit of 2:1"),
    ],
)
def test_each_limit_names_itself(studio_home, tmp_path, limits, phrase) -> None:
    entries = two_classes()
    entries["red/flat.png"] = encode(Image.new("RGB", (600, 600), (5, 5, 5)), compress_level=0)
    path = write_zip(tmp_path / "pictures.zip", entries)
    if limits.max_entries == 10:
        path = write_zip(tmp_path / "pictures.zip", two_classes())
    with pytest.raises(DatasetError, match=phrase):
        add_image_zip(path, limits=limits)
    assert stored_files(studio_home) == []


@pytest.mark.parametrize(
    ("entries", "phrase"),
    [
        ({}, "holds no usable pictures"),
        ({"notes/a.txt": b"hello"}, "holds no usable pictures"),
        (
            {f"cats/{i}.png": encode(Image.new("RGB", (8, 8), (i, 0, 0))) for i in range(5)},
            r"one class only \('cats'\)",
        ),
    ],
)
def test_unusable_zips_say_why(studio_home, tmp_path, entries, phrase) -> None:
    with pytest.raises(DatasetError, match=phrase):
        add_image_zip(write_zip(tmp_path / "bad.zip", entries))
    assert list_datasets() == [] and not [p for p in (studio_home / "datasets").iterdir()]


def test_not_a_zip(studio_home, tmp_path) -> None:
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK\x03\x04 but nothing else")
    with pytest.raises(DatasetError, match="not a readable zip file"):
        add_image_zip(fake)


# --------------------------------------------------------------------------- store and CLI
def test_store_lists_readds_and_deletes(studio_home, tmp_path, capsys) -> None:
    from studio.cli import main

    path = make_zip(tmp_path / "shapes.zip", per_class=12)
    assert main(["datasets", "add", str(path)]) == 0
    out = capsys.readouterr().out
    dataset_id = out.splitlines()[0]
    assert "36 pictures in 3 classes (blue, red, stripes)" in out
    assert get_dataset(dataset_id).kind == "images"
    assert add_image_zip(path.read_bytes(), filename="again.zip").id == dataset_id  # same content
    assert add_data_file(path).id == dataset_id and resolve_dataset(str(path)).id == dataset_id
    assert [d.id for d in list_datasets()] == [dataset_id]
    assert main(["datasets", "show", dataset_id]) == 0
    delete_dataset(dataset_id)
    assert list_datasets() == [] and not os.listdir(studio_home / "datasets")


def test_a_damaged_entry_is_skipped_not_a_crash(studio_home, tmp_path) -> None:
    path = write_zip(tmp_path / "damaged.zip", two_classes())
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        member = zf.getinfo("red/3.png")
    start = member.header_offset + 30 + len(member.filename) + len(member.extra)
    data[start + 20 : start + 40] = bytes(20)  # corrupt the packed bytes: CRC or inflate error
    path.write_bytes(bytes(data))
    info = add_image_zip(path)
    reasons = {s["file"]: s["reason"] for s in load_profile(info.id)["skipped"]}
    assert set(reasons) == {"red/3.png"} and "damaged" in reasons["red/3.png"]
