"""Label formats: every layout users bring, and errors that name the file and line."""

from __future__ import annotations


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prep.errors import InputError
from prep.labels import CsvLabels, JsonlLabels, SpaceLabels, SubdirLabels
from prep.sources import ImageDirSource


def pairs(entries):
    return [(e.name, e.label) for e in entries]


def test_space_tolerates_crlf_blank_lines_comments_tabs_and_bom(tmp_path):
    path = tmp_path / "val.txt"
    path.write_bytes(b"\xef\xbb\xbf# caffe val.txt\r\na.JPEG 65\r\n\r\nb.JPEG\t970\r\n   \r\nc.JPEG   cat")
    entries = SpaceLabels(str(path)).entries(None)
    assert pairs(entries) == [("a.JPEG", "65"), ("b.JPEG", "970"), ("c.JPEG", "cat")]
    assert entries[1].where == f"{path}:4"


def test_space_error_names_file_line_and_shows_it(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("a.jpg 1\nb.jpg 2\n\n# note\nimg_extra.jpg two three\n")
    with pytest.raises(InputError) as err:
        SpaceLabels(str(path)).entries(None)
    assert str(err.value) == f"{path}:5: expected \"filename label\", got 'img_extra.jpg two three'"


def test_jsonl_both_styles(tmp_path):
    path = tmp_path / "label.txt"
    path.write_text('{"00000030_3.png": 3}\r\n{"file_name": "x/00000034_0.png", "label": "zero"}\n\n')
    assert pairs(JsonlLabels(str(path)).entries(None)) == [("00000030_3.png", "3"), ("x/00000034_0.png", "zero")]


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"a.png": 3', "not JSON"),
        ('["a.png", 3]', "expected"),
        ('{"a.png": 3, "b.png": 4}', "expected"),
        ('{"a.png": [3]}', "must be an integer or a class name"),
        ('{"file_name": "a.png"}', 'no "label"'),
        ('{"a.png": true}', "must be an integer or a class name"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path, line, message):
    path = tmp_path / "label.txt"
    path.write_text('{"ok.png": 1}\n' + line + "\n")
    with pytest.raises(InputError, match=message) as err:
        JsonlLabels(str(path)).entries(None)
    assert str(err.value).startswith(f"{path}:2: ")


def test_csv_with_header_picks_columns(tmp_path):
    path = tmp_path / "trainLabels.csv"
    path.write_text("id,label\r\n1,frog\r\n2,truck\r\n\r\n3,truck\r\n")
    entries = CsvLabels(str(path), filename_column="id", label_column="label").entries(None)
    assert pairs(entries) == [("1", "frog"), ("2", "truck"), ("3", "truck")]
    assert entries[2].where == f"{path}:5"


def test_csv_errors(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("id,label\n1,frog\n2,truck,extra\n")
    with pytest.raises(InputError, match=rf"{path}:3: expected 2 columns"):
        CsvLabels(str(path), "id", "label").entries(None)
    with pytest.raises(InputError, match=r"no column labels.filename_column='filename'; the header has \['id', 'label'\]"):
        CsvLabels(str(path)).entries(None)


def test_missing_label_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="labels.path=.*: no such file"):
        SpaceLabels(str(tmp_path / "nope.txt")).entries(None)
    with pytest.raises(InputError, match="labels.path is not set"):
        SpaceLabels("").entries(None)


def test_subdirs_uses_parent_folder_names(tmp_path):
    for cls, name in [("cat", "1.jpg"), ("dog", "2.png"), ("dog", "nested/3.jpg")]:
        (tmp_path / cls / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / cls / name).write_bytes(b"x")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    entries = SubdirLabels().entries(ImageDirSource(str(tmp_path)))
    assert pairs(entries) == [("cat/1.jpg", "cat"), ("dog/2.png", "dog"), ("dog/nested/3.jpg", "dog")]


_line = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(_line, max_size=6))
def test_label_parsers_fail_only_with_our_error(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("fuzz") / "labels"
    path.write_text("\n".join(lines), encoding="utf-8")
    for parser in (SpaceLabels(str(path)), JsonlLabels(str(path)), CsvLabels(str(path))):
        try:
            entries = parser.entries(None)
        except InputError as err:
            assert str(err)
            continue
        for entry in entries:
            assert isinstance(entry.name, str) and isinstance(entry.label, str) and entry.label
