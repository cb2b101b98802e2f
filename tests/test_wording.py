"""Words a non-programmer reads: years, sizes, run names, metric names, mirroring advice (issue 7, point 10)."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from studio.app import ui
from studio.core.spec import RunSpec
from studio.data import (
    add_csv,
    add_data_file,
    add_image_zip,
    image_defaults,
    mirroring_changes_meaning,
    readable_run_name,
)
from tests.images.conftest import encode, make_zip, picture


def test_numbers_in_column_summaries_read_as_people_write_them() -> None:
    years = {"kind": "numeric", "stats": {"min": 2007.0, "max": 2009.0, "mean": 2008.03}}
    assert ui.column_summary(years) == "2007 to 2009, average 2008"
    money = {"kind": "numeric", "stats": {"min": 0.5, "max": 123456.7, "mean": 12345.6}}
    assert ui.column_summary(money) == "0.5 to 123,457, average 12,346"
    assert "e+" not in ui.column_summary({"kind": "numeric", "stats": {"min": 1e-5, "max": 3e7, "mean": 1.0}})


def test_the_data_set_table_says_pictures_and_classes_for_picture_sets(
    studio_home: Path, tmp_path: Path
) -> None:
    table = add_csv(b"a,b,label\n1,2,x\n3,4,y\n5,6,x\n", name="tiny")
    pictures = add_image_zip(make_zip(tmp_path / "shapes.zip", per_class=4))
    frame = ui.datasets_frame([table, pictures]).set_index("Name")
    assert "Rows" not in frame.columns and "Columns" not in frame.columns
    assert frame.loc["tiny", "Size"] == "3 rows × 3 columns"
    assert frame.loc["shapes", "Size"] == "12 pictures in 3 classes"
    assert ui.dataset_label(pictures) == "shapes — 12 pictures" and ui.dataset_label(table).endswith("3 columns")


def test_the_data_list_names_each_data_set_in_its_kind_s_own_word(studio_home: Path, capsys) -> None:
    """A JSONL of language-model examples is stored as a table, but the list says what it is (it said
    'table'); the words come from each kind's registration, on the Data page and in ``datasets list``."""
    from studio.cli.main import main

    table = add_csv(b"a,b,label\n1,2,x\n3,4,y\n5,6,x\n", name="tiny")
    lines = [
        json.dumps({"prompt": f"What is {n} plus {n}?", "response": f"It is {2 * n}, the sum of {n} and {n}."})
        for n in range(6)
    ]
    chat = add_data_file("\n".join(lines).encode(), name="chat", filename="chat.jsonl")
    assert chat.kind == table.kind  # stored as a table of examples
    frame = ui.datasets_frame([table, chat]).set_index("Name")
    assert frame["Kind"].to_dict() == {"tiny": "table", "chat": "language-model examples"}
    assert main(["datasets", "list"]) == 0
    listed = {line.split()[-1]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "language-model examples" in listed["chat"] and " table " in listed["tiny"]


def test_runs_are_named_after_the_data_set_and_what_they_learn(studio_home: Path, tmp_path: Path) -> None:
    table = add_csv(b"bill,flipper,species\n1,2,Adelie\n3,4,Gentoo\n5,6,Adelie\n", name="penguins")
    spec = RunSpec.from_dict(
        {"task": "classification", "data": {"dataset_id": table.id, "target": "species"}}
    )
    assert re.fullmatch(r"penguins · species · Neural network · \d\d-\d\d \d\d:\d\d", readable_run_name(spec))

    digits = add_image_zip(make_zip(tmp_path / "shapes.zip", per_class=4))
    spec = RunSpec.from_dict(
        {
            "task": "image_classification",
            "data": {"dataset_id": digits.id, "target": "label"},
            "architecture": {"name": "small_cnn"},
        }
    )
    name = readable_run_name(spec)
    assert name.startswith("shapes · 3 classes · Small CNN · ") and "small_cnn" not in name
    assert readable_run_name(spec.with_changes(name="mine")) == "mine"


def _classes(*names: str) -> dict:
    return {"classes": [{"name": name} for name in names]}


@pytest.mark.parametrize(
    ("names", "changes_meaning"),
    [
        ([str(d) for d in range(10)], True),  # digits
        (["a", "b", "c", "d"], True),
        (["left_arrow", "right_arrow", "stop"], True),
        (["Text", "photo"], True),
        (["cats", "dogs"], False),
        (["red", "blue", "stripes"], False),
        (["textured", "smooth"], False),  # 'textured' is not 'text'
        (["a", "cats", "dogs"], False),  # one single letter among words is not a character set
    ],
)
def test_mirroring_is_said_to_change_meaning_only_for_handed_classes(
    names: list[str], changes_meaning: bool
) -> None:
    profile = _classes(*names)
    assert (mirroring_changes_meaning(profile) is not None) is changes_meaning
    assert image_defaults(profile) == {"image.horizontal_flip": not changes_meaning}


def test_a_digit_zip_warns_that_mirroring_changes_meaning(studio_home: Path, tmp_path: Path) -> None:
    profile = add_image_zip(_digit_zip(tmp_path / "digits.zip")).path / "profile.json"
    import json

    warnings = json.loads(profile.read_text())["warnings"]
    (mirror,) = [w for w in warnings if w["code"] == "mirroring_changes_meaning"]
    assert "look like characters (0, 1, 2, 3)" in mirror["message"]
    assert "starts off" in mirror["action"]


def _digit_zip(path: Path) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for digit in "0123":
            for i in range(3):
                zf.writestr(f"{digit}/{i}.png", encode(picture("red", rng)))
    return path


def test_the_cli_starts_digits_without_mirroring_unless_asked(studio_home: Path, tmp_path: Path) -> None:
    from studio.cli import build_parser
    from studio.cli.spec import spec_from_args

    digits = str(_digit_zip(tmp_path / "digits.zip"))
    spec = spec_from_args(build_parser().parse_args(["train", "--data", digits]))
    assert spec.image.horizontal_flip is False
    asked = ["train", "--data", digits, "--set", "image.horizontal_flip=true"]
    assert spec_from_args(build_parser().parse_args(asked)).image.horizontal_flip is True
    shapes = str(make_zip(tmp_path / "shapes.zip", per_class=4))
    assert (
        spec_from_args(build_parser().parse_args(["train", "--data", shapes])).image.horizontal_flip is True
    )


def test_counts_agree_with_their_nouns_and_devices_read_as_words() -> None:
    import pandas as pd

    from studio.app import runs_view as rv
    from studio.core.text import counted
    from studio.data import profile_table

    assert (counted(1, "run"), counted(2, "run"), counted(1, "class", "classes")) == (
        "1 run",
        "2 runs",
        "1 class",
    )
    assert counted(1234, "row") == "1,234 rows"
    once = profile_table(pd.DataFrame({"a": [1, 1, 2, 3, 4, 5], "b": ["x", "x", "y", "z", "w", "v"]}))
    (warning,) = [w for w in once["warnings"] if w["code"] == "duplicates"]
    assert warning["message"].startswith("1 row (17%) repeats an earlier row exactly.")
    assert rv.device_words("cpu:0") == "the processor (CPU)"
    assert rv.device_words("cuda:1") == "GPU 1"
    assert rv.device_words("cuda:0,cuda:1") == "GPUs 0 and 1"


def test_id_and_free_text_columns_are_explained_on_the_data_page() -> None:
    import pandas as pd

    frame = pd.DataFrame({"Column": ["name", "age"], "Type": [ui.KIND_WORDS["identifier"], "number"]})
    (line,) = ui.type_explanations(frame)
    assert line.startswith("**id (ignored)**") and "tells the model nothing about new rows" in line
