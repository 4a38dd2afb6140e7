"""Label formats: every layout users bring, and errors that name the file and line."""

from __future__ import annotations

import io
import os
import tracemalloc
import unicodedata
from unittest import mock

import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from prep.core.errors import ConfigError, EncodeError, InputError, PrepError
from prep.labels.base import KINDS
from prep.labels.csv import CsvLabels
from prep.labels.embedded import EmbeddedLabels
from prep.labels.jsonl import JsonlLabels
from prep.labels.space import SpaceLabels
from prep.labels.subdirs import SubdirLabels
from prep.run.listing import label_ids, read_items
from prep.sources import lines
from prep.sources.base import Source
from prep.sources.image_dir import ImageDirSource
from prep.sources.pixel_csv import PixelCsvSource


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


# --- labels.kind: one stray value never renumbers a dataset ---------------------------------------------


def write(tmp_path, data: bytes, name: str = "labels.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def ids_of(labels, source=None):
    return label_ids(labels.entries(source), labels.kind)


def test_a_header_line_is_named_not_turned_into_a_class(tmp_path):
    path = write(tmp_path, b"filename label\na.jpg 3\nb.jpg 10\n")
    with pytest.raises(InputError) as err:
        ids_of(SpaceLabels(str(path)))
    assert str(err.value) == (
        f"{path}:1: label 'label' is not an integer, but 2 other labels are (labels.kind=auto); "
        "it looks like a header line: remove that line, or set labels.kind=name to read every label as a class name"
    )
    # Asked for, names are names: "10" sorts before "3".
    assert ids_of(SpaceLabels(str(path), kind="name")) == ([2, 1, 0], ["10", "3", "label"])


@pytest.mark.parametrize("odd", ["1.0", "1e3", "１", "+-1", "0x1", "1_000", "٣"])
def test_a_stray_non_integer_among_integers_is_an_error_naming_it(tmp_path, odd):
    path = write(tmp_path, f"a.jpg 3\nb.jpg {odd}\nc.jpg 10\n".encode())
    with pytest.raises(InputError) as err:
        ids_of(SpaceLabels(str(path)))
    assert str(err.value) == (
        f"{path}:2: label {odd!r} is not an integer, but 2 other labels are (labels.kind=auto); "
        "fix the value, or set labels.kind=name to read every label as a class name"
    )
    with pytest.raises(InputError) as err:
        ids_of(SpaceLabels(str(path), kind="int"))
    assert str(err.value).startswith(f"{path}:2: label {odd!r} is not an integer (labels.kind=int: ASCII digits with an optional sign); fix")


def test_a_stray_integer_among_class_names_is_an_error_naming_it(tmp_path):
    path = write(tmp_path, b"a.jpg cat\nb.jpg 3\nc.jpg dog\n")
    with pytest.raises(InputError) as err:
        ids_of(SpaceLabels(str(path)))
    assert str(err.value) == (
        f"{path}:2: label '3' is an integer, but 2 other labels are class names (labels.kind=auto); "
        "fix the value, or set labels.kind=name to read every label as a class name ('3' too)"
    )
    assert ids_of(SpaceLabels(str(path), kind="name")) == ([1, 0, 2], ["3", "cat", "dog"])


def test_integers_are_kept_exactly_in_auto_and_int(tmp_path):
    path = write(tmp_path, b"a.jpg 10\nb.jpg -2\nc.jpg +7\nd.jpg 007\ne.jpg 9223372036854775808\n")
    expected = ([10, -2, 7, 7, 2**63], None)
    assert ids_of(SpaceLabels(str(path))) == expected
    assert ids_of(SpaceLabels(str(path), kind="int")) == expected


def test_a_5000_digit_label_is_an_exact_integer_not_a_python_error(tmp_path):
    path = write(tmp_path, b'{"a.png": 1}\n{"b.png": 1' + b"0" * 5000 + b"}\n")
    ids, names = ids_of(JsonlLabels(str(path)))
    assert ids == [1, 10**5000] and names is None


def test_kind_is_checked_when_the_stage_is_built():
    for make in (lambda k: SpaceLabels("x", kind=k), lambda k: CsvLabels("x", kind=k), lambda k: JsonlLabels("x", kind=k),
                 lambda k: SubdirLabels(kind=k), lambda k: EmbeddedLabels(kind=k)):
        with pytest.raises(ConfigError, match=r"^labels.kind='integer': choose auto .*, int .* or name "):
            make("integer")
        assert make("name").kind == "name"


def test_kind_is_a_config_key_of_every_labels_choice():
    from hydra import compose, initialize_config_dir

    from prep.app import build
    from prep.config import register

    register()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for choice in ("space", "jsonl", "csv", "subdirs", "embedded"):
            assert compose(config_name="config", overrides=[f"labels={choice}"]).labels.kind == "auto"
            cfg = compose(config_name="config", overrides=[f"labels={choice}", "labels.kind=name"])
            assert build(cfg.labels, "labels").kind == "name"
        cfg = compose(config_name="config", overrides=["labels=space", "labels.kind=names"])
    with pytest.raises(ConfigError, match="labels.kind='names': choose auto"):
        build(cfg.labels, "labels")


def test_byte_order_marks_anywhere_and_invisible_ends_are_not_part_of_values(tmp_path):
    # Two files joined with `cat`, each with its BOM; a zero-width space and a no-break space after labels.
    path = write(tmp_path, b"\xef\xbb\xbfa.jpg 3\r\n\xef\xbb\xbfb.jpg 1\xe2\x80\x8b\nc.jpg\t10\xc2\xa0\n\xef\xbb\xbf")
    entries = SpaceLabels(str(path)).entries(None)
    assert pairs(entries) == [("a.jpg", "3"), ("b.jpg", "1"), ("c.jpg", "10")]
    assert label_ids(entries) == ([3, 1, 10], None)
    csv_path = write(tmp_path, b"\xef\xbb\xbffilename,label\na.jpg,\xef\xbb\xbf3\n", "l.csv")
    assert pairs(CsvLabels(str(csv_path)).entries(None)) == [("a.jpg", "3")]
    json_path = write(tmp_path, b'\xef\xbb\xbf{"a.jpg": "\\ufeffcat\\u200b"}\n', "l.jsonl")
    assert pairs(JsonlLabels(str(json_path)).entries(None)) == [("a.jpg", "cat")]


def test_class_ids_do_not_depend_on_limit(tmp_path):
    path = write(tmp_path, b"a.jpg zebra\nb.jpg ant\nc.jpg moth\n")
    full = read_items(AnyName(), SpaceLabels(str(path)))
    smoke = read_items(AnyName(), SpaceLabels(str(path)), limit=1)
    assert full.class_names == smoke.class_names == ["ant", "moth", "zebra"]
    assert [item.label for item in smoke.items] == [2] == [item.label for item in full.items][:1]


# --- label files that are not what they should be: one line naming file and line, never a traceback ----


@pytest.mark.parametrize(
    "data, message",
    [
        ("a.jpg 3\n".encode("utf-16"), "{path}: looks like UTF-16 text; save it as UTF-8"),
        ("a.jpg 3\nb.jpg 4\n".encode("utf-16-le"), "{path}: looks like UTF-16 text; save it as UTF-8"),
        (b"\nb\x00.jpg 4\n", "{path}:2: a NUL byte: this does not look like a text file (save it as plain UTF-8 text)"),
        (b"\nb.jpg caf\xe9\n", "{path}:2: not UTF-8 text (invalid continuation byte at byte 9 of the line); save the file as UTF-8"),
    ],
)
def test_files_that_are_not_utf8_text_are_named(tmp_path, data, message):
    # Line 1 is blank (every format skips it): the problem is found while reading, before any parsing.
    path = write(tmp_path, data)
    for labels in (SpaceLabels(str(path)), JsonlLabels(str(path)), CsvLabels(str(path))):
        with pytest.raises(InputError) as err:
            labels.entries(None)
        assert str(err.value) == message.format(path=path)


def test_a_file_without_line_breaks_is_not_read_whole(tmp_path):
    path = write(tmp_path, b"a.jpg 3\n" + b"x" * (8 << 20))  # 8 MiB on line 2
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as err:
            SpaceLabels(str(path)).entries(None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(err.value) == f"{path}:2: a line longer than 1048576 bytes: this does not look like a text file with one entry per line"
    assert peak < 4 << 20


def test_a_folder_or_a_fifo_as_the_label_file_is_named_without_blocking(tmp_path):
    with pytest.raises(InputError, match=f"^labels.path={tmp_path}: is a folder, expected a label file$"):
        SpaceLabels(str(tmp_path)).entries(None)
    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    with pytest.raises(InputError) as err:
        CsvLabels(str(fifo)).entries(None)
    assert str(err.value) == f"labels.path={fifo}: not a regular file (a FIFO, socket or device), expected a label file"


@pytest.mark.parametrize(
    "line, detail",
    [
        ('{"a.png": 3.0}', "(a number with a fraction or exponent)"),
        ('{"a.png": 1e3}', "(a number with a fraction or exponent)"),
        ('{"a.png": false}', "(true/false)"),
        ('{"a.png": null}', "(null)"),
        ('{"a.png": [3]}', "(a list)"),
        ('{"a.png": {"id": 3}}', "(an object)"),
        ('{"a.png": " \\u200b"}', ""),
    ],
)
def test_json_values_that_are_not_labels(tmp_path, line, detail):
    path = write(tmp_path, f'{{"ok.png": 1}}\n{line}\n'.encode())
    with pytest.raises(InputError) as err:
        JsonlLabels(str(path)).entries(None)
    assert str(err.value) == f"{path}:2: the label must be an integer or a class name, got {line!r}" + (f" {detail}" if detail else "")


def test_json_that_python_cannot_parse_as_is(tmp_path):
    deep = write(tmp_path, b"[" * 100_000 + b"\n", "deep.jsonl")
    with pytest.raises(InputError, match=rf"^{deep}:1: not a label line \(JSON nested too deeply\): '\[\[\[\[.*\.\.\. \(100000 characters\)$"):
        JsonlLabels(str(deep)).entries(None)
    surrogate = write(tmp_path, b'{"a.png": "\\ud800"}\n', "surrogate.jsonl")
    with pytest.raises(InputError, match=rf"^{surrogate}:1: the label '\\ud800' is not valid Unicode"):
        JsonlLabels(str(surrogate)).entries(None)


def test_json_naming_a_key_twice_is_not_resolved_silently(tmp_path):
    path = write(tmp_path, b'{"a.png": 1, "a.png": 2}\n')
    with pytest.raises(InputError) as err:
        JsonlLabels(str(path)).entries(None)
    assert str(err.value) == f"""{path}:1: names 'a.png' twice; which value is meant? '{{"a.png": 1, "a.png": 2}}'"""


def test_csv_quoted_fields_and_line_breaks_inside_them(tmp_path):
    path = write(tmp_path, b'filename,label\n"a, b.jpg","3"\n"multi\nline.jpg",4\r\n\r\nc.jpg," 5 "\n', "l.csv")
    entries = CsvLabels(str(path)).entries(None)
    assert pairs(entries) == [("a, b.jpg", "3"), ("multi\nline.jpg", "4"), ("c.jpg", "5")]
    assert [e.where for e in entries] == [f"{path}:2", f"{path}:3", f"{path}:6"]  # the line a row starts on


def test_csv_with_mac_line_endings(tmp_path):
    path = write(tmp_path, b"filename,label\ra.jpg,1\rb.jpg,2\r", "l.csv")
    entries = CsvLabels(str(path)).entries(None)
    assert pairs(entries) == [("a.jpg", "1"), ("b.jpg", "2")] and entries[1].where == f"{path}:3"


def test_line_breaks_split_across_reads_count_once(tmp_path):
    # The reader takes 64 KiB at a time: put a \r\n across that boundary, and a lone \r at the very end.
    first = b"a.jpg 1" + b" " * (65536 - len(b"a.jpg 1") - 1) + b"\r"
    path = write(tmp_path, first + b"\nb.jpg 2\rc.jpg 3\r")
    entries = SpaceLabels(str(path)).entries(None)
    assert pairs(entries) == [("a.jpg", "1"), ("b.jpg", "2"), ("c.jpg", "3")]
    assert [e.where for e in entries] == [f"{path}:1", f"{path}:2", f"{path}:3"]


def test_a_header_after_comments_is_still_recognised(tmp_path):
    path = write(tmp_path, b"# exported 2024\nfile class\na.jpg 1\n")
    with pytest.raises(InputError, match=rf"^{path}:2: label 'class' is not an integer, but 1 other label is \(labels.kind=auto\); it looks like a header line"):
        ids_of(SpaceLabels(str(path)))


def test_csv_duplicate_header_names_and_oversized_fields(tmp_path):
    path = write(tmp_path, b"filename,label,label\na.jpg,1,2\n", "dup.csv")
    with pytest.raises(InputError) as err:
        CsvLabels(str(path)).entries(None)
    assert str(err.value) == f"{path}:1: the header has 2 columns named 'label' (labels.label_column); rename all but one"
    assert pairs(CsvLabels(str(write(tmp_path, b"filename,x,x,label\na.jpg,1,2,3\n", "ok.csv"))).entries(None)) == [("a.jpg", "3")]
    big = write(tmp_path, b"filename,label\na.jpg,1\nb.jpg," + b"9" * 200_000 + b"\n", "big.csv")
    with pytest.raises(InputError, match=rf"^{big}:3: not CSV as expected: field larger than field limit"):
        CsvLabels(str(big)).entries(None)


# --- every label file, every kind: PrepError or ids exactly as specified ----------------------------------

_PIECES = st.sampled_from(
    [b"a.jpg", b"b.png", b" ", b"\t", b"3", b"-7", b"+2", b"007", b"10", b"1.0", b"1e3", b"cat", b"Dog", b"label",
     b"filename", b"#", b",", b'"', b"{", b"}", b":", b"[", b"]", b"\r", b"\n", b"\r\n", b"\x00", b"\xff", b"\xef\xbb\xbf",
     b"\xe2\x80\x8b", b"\xc2\xa0", b"\xef\xbc\x93", b"9223372036854775808", b"true", b"null", b"3.5", b"\\ud800",
     b'{"a.jpg": 3}\n', b'{"b.jpg": "cat"}\n', b'{"file_name": "c.jpg", "label": -12}\n', b"filename,label\n",
     b'"x\ny.jpg",4\n', b"c.jpg 5\n", b"d.jpg dog\n", b"\xff\xfe", b"1" * 30]
)
_FILES = st.one_of(st.binary(max_size=120), st.lists(_PIECES, max_size=24).map(b"".join))


def _is_ascii_integer(text: str) -> bool:
    body = text[1:] if text[:1] in ("+", "-") else text
    return bool(body) and all(c in "0123456789" for c in body)


def _assert_ids_as_specified(labels: list[str], kind: str, ids: list[int], names) -> None:
    for label in labels:
        assert label and "\ufeff" not in label and label == label.strip() and unicodedata.category(label[0]) != "Cf"
    integers = [_is_ascii_integer(label) for label in labels]
    if kind == "int" or (kind == "auto" and any(integers)):
        assert all(integers)  # auto with a mix, or int with a name, must have raised
        assert names is None and ids == [int(label) for label in labels]
    else:
        assert names == sorted(set(labels)) and ids == [names.index(label) for label in labels]


@settings(max_examples=150, deadline=None)
@given(data=_FILES)
def test_any_label_file_gives_ids_as_specified_or_a_prep_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "labels"
    path.write_bytes(data)
    for kind in KINDS:
        for labels in (SpaceLabels(str(path), kind=kind), JsonlLabels(str(path), kind=kind), CsvLabels(str(path), kind=kind)):
            try:
                entries = labels.entries(None)
                ids, names = label_ids(entries, kind)
            except PrepError as err:
                assert str(err)
            else:
                _assert_ids_as_specified([e.label for e in entries], kind, ids, names)
            try:
                listing = read_items(AnyName(), labels)
            except PrepError as err:
                assert str(err)
            else:
                assert {item.label for item in listing.items} <= set(ids)


@settings(max_examples=100, deadline=None)
@given(data=_FILES)
def test_any_pixel_csv_gives_ids_as_specified_or_a_prep_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "pixels.csv"
    path.write_bytes(data)
    for kind in KINDS:
        for header in (False, True):
            source = PixelCsvSource(str(path), shape=[1, 2], header=header)
            try:
                listing = read_items(source, EmbeddedLabels(kind=kind))
                entries = source.labelled_entries()
            except PrepError as err:
                assert str(err)
                continue
            ids, names = label_ids(entries, kind)
            _assert_ids_as_specified([e.label for e in entries], kind, ids, names)
            assert [item.label for item in listing.items] == ids
            for item in listing.items:
                try:
                    assert source.read(item.ref).shape == (1, 2)
                except EncodeError as err:
                    assert str(err).startswith(f"line {item.ref[2]}: ")


# --- one file reached twice, and files labels=subdirs leaves out -------------------------------------------


class AnyName(Source):
    """A source where every non-empty name is a file; no folder to list."""

    def check(self) -> None:
        pass

    def describe(self) -> str:
        return "any"

    def resolve(self, name: str) -> str:
        if not name.strip():
            raise EncodeError("empty name")
        return name.strip()


class LinkedNames(AnyName):
    """b.jpg is a symlink to a.jpg: two names, one file, as ImageDirSource.identity tells."""

    lists_files = True

    def identity(self, ref: str) -> str:
        return "a.jpg" if ref == "b.jpg" else ref

    def image_files(self) -> list[str]:
        return ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


def test_one_file_under_two_names_with_two_labels_is_an_error_naming_both(tmp_path):
    path = write(tmp_path, b"a.jpg 1\nc.jpg 1\nb.jpg 2\n")
    with pytest.raises(InputError) as err:
        read_items(LinkedNames(), SpaceLabels(str(path)))
    assert str(err.value) == f"{path}:3: b.jpg is listed again with another label (first at {path}:1 as a.jpg, the same file)"
    # Without identity the source cannot tell, and the two names stay two items.
    assert len(read_items(AnyName(), SpaceLabels(str(path))).items) == 3


def test_one_file_under_two_names_with_one_label_is_kept_once(tmp_path):
    path = write(tmp_path, b"a.jpg 1\nb.jpg 1\nc.jpg 2\nc.jpg 2\n")
    listing = read_items(LinkedNames(), SpaceLabels(str(path)))
    assert [(item.name, item.label) for item in listing.items] == [("a.jpg", 1), ("c.jpg", 2)]
    assert [(s.source, s.reason, s.where) for s in listing.skipped] == [
        ("b.jpg", f"listed twice (first at {path}:1 as a.jpg, the same file)", f"{path}:2"),
        ("c.jpg", f"listed twice (first at {path}:3)", f"{path}:4"),
    ]
    assert listing.unlabelled == ["d.jpg"]  # b.jpg was labelled, as a.jpg


def test_subdirs_counts_the_files_it_leaves_out(tmp_path):
    files = ["cat/1.jpg", "cat/2.jfif", "cat/3.JPE", "cat/4.pjpeg", "dog/5.png", "cat/6.heic", "cat/notes.txt",
             "cat/.DS_Store", "cat/._1.jpg", "cat/.ipynb_checkpoints/1-checkpoint.jpg", ".ipynb_checkpoints/7.jpg", "README.md"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    listing = read_items(ImageDirSource(str(tmp_path)), SubdirLabels())
    assert [(item.name, item.label) for item in listing.items] == [
        ("cat/1.jpg", 0), ("cat/2.jfif", 0), ("cat/3.JPE", 0), ("cat/4.pjpeg", 0), ("dog/5.png", 1)
    ]
    assert listing.class_names == ["cat", "dog"]
    assert listing.ignored == sorted(files[5:])
    assert read_items(ImageDirSource(str(tmp_path)), SpaceLabels(str(write(tmp_path, b"cat/1.jpg 1\n", "l.txt")))).ignored == []


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.sampled_from([b"a", b"bc", b"\r", b"\n", b"\r\n", b" ", b"\xef\xbb\xbf"]), max_size=40).map(b"".join),
       chunk=st.integers(1, 7))
def test_read_lines_splits_like_python_whatever_the_read_size(data, chunk):
    # Tiny reads put every line break, \r\n pairs included, across read boundaries somewhere.
    with mock.patch.object(lines, "_CHUNK", chunk):
        universal = [line for _, line in lines.read_lines(io.BytesIO(data), "f", universal=True)]
        plain = [line for _, line in lines.read_lines(io.BytesIO(data), "f")]
    assert universal == data.splitlines(keepends=True)
    assert plain == io.BytesIO(data).readlines()


def test_labels_that_are_all_decimals_are_not_silently_names(tmp_path):
    """pandas writes an integer column with a gap as 0.0, 1.0, ... 10.0: as names, '10.0' would get id 2."""
    from prep.core.errors import InputError
    from prep.run.listing import label_ids
    from prep.sources.base import LabelEntry

    entries = [LabelEntry(f"{i}.png", f"{i}.0", f"l.txt:{i + 1}") for i in range(11)]
    with pytest.raises(InputError, match=r"l.txt:1: every label is a number but not an integer \(e.g. '0.0'"):
        label_ids(entries, "auto")
    ids, names = label_ids(entries, "name")
    assert names[:3] == ["0.0", "1.0", "10.0"] and ids[10] == 2  # asked for: names sorted as text


def test_one_class_whatever_its_unicode_normalization(tmp_path):
    import unicodedata

    from prep.run.listing import label_ids
    from prep.sources.base import LabelEntry

    nfc, nfd = "caf\u00e9", unicodedata.normalize("NFD", "caf\u00e9")
    ids, names = label_ids([LabelEntry("a.png", nfc, "l:1"), LabelEntry("b.png", nfd, "l:2"), LabelEntry("c.png", "tea", "l:3")])
    assert ids == [0, 0, 1] and names == [nfc, "tea"]
