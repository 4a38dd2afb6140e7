"""The item table and the folder walk behind planning: compact, exact, and the same items as before."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from prep.core.table import ItemTable, Strings, StringsBuilder, repeated, sorted_contains, sorted_unique
from prep.core.values import Item
from prep.labels.space import SpaceLabels
from prep.run.listing import read_items
from prep.sources.image_dir import ImageDirSource

NAMES = ["a.jpg", "", "café/é.png", "x\udcff.jpg", "日本/猫.jpg", "z" * 300]


def test_strings_keep_every_name_exactly_through_slices_takes_and_pickles():
    strings = Strings.of(NAMES)
    assert list(strings) == NAMES and len(strings) == len(NAMES)
    assert [strings[i] for i in range(len(NAMES))] == NAMES and strings[-1] == NAMES[-1]
    assert list(strings[2:5]) == NAMES[2:5] and list(strings[::2]) == NAMES[::2] and list(strings[4:2]) == []
    assert list(strings.take([5, 0, 3])) == [NAMES[5], NAMES[0], NAMES[3]]
    assert list(pickle.loads(pickle.dumps(strings[1:4]))) == NAMES[1:4]
    with pytest.raises(IndexError):
        strings[len(NAMES)]


def test_builder_extend_equals_append_for_ascii_and_other_names():
    one, many = StringsBuilder(), StringsBuilder()
    for name in NAMES:
        one.append(name)
    many.extend(NAMES[:2])
    many.extend(NAMES[2:])
    assert list(one.build()) == list(many.build()) == NAMES


def test_item_table_reads_as_items_with_path_int_and_tuple_refs():
    paths = [Item("a.jpg", 3, "a.jpg"), Item("b/c.png", 0, "b/c.png")]
    ints = [Item("digit_0000", 1, 0), Item("digit_0001", 7, 1)]
    rows = [Item("m.csv:2", 5, (10, 20, 2)), Item("m.csv:3", 6, (30, 20, 3))]
    for items in (paths, ints, rows):
        table = ItemTable.of(items) if items is not rows else ItemTable(Strings.of(i.name for i in rows), np.array([5, 6]), np.array([r.ref for r in rows]))
        assert list(table) == items and [table[i] for i in range(len(items))] == items
        assert list(table[1:]) == items[1:] and list(table.take([1, 0])) == items[::-1]
        assert list(pickle.loads(pickle.dumps(table[:1]))) == items[:1]
        assert all(type(item.label) is int for item in table)


def test_a_shard_slice_pickles_only_its_rows():
    table = ItemTable.of(Item(f"img_{i:07d}.jpg", i % 10, f"img_{i:07d}.jpg") for i in range(100_000))
    assert table.nbytes <= 3_200_000  # 100k items of 15-character names: name, offset and label, 31 bytes each
    assert len(pickle.dumps(table[:5000])) < len(pickle.dumps(table)) / 15


def test_sorted_helpers():
    values = np.array([5, 3, 5, 9, 3, 3, -2], dtype=np.int64)
    assert sorted_unique(values).tolist() == [-2, 3, 5, 9]
    assert repeated(values).tolist() == [3, 5]
    assert sorted_contains(sorted_unique(values), [3, 4, -2, 10]).tolist() == [True, False, True, False]
    assert sorted_contains(np.zeros(0, dtype=np.int64), [1]).tolist() == [False]


def test_walk_order_is_sorted_by_full_path(tmp_path):
    """A folder's files sort as its name plus "/" among its siblings: "a.jpg" before "a/x.jpg" before "a0.jpg"."""
    for rel in ["a.jpg", "a/x.jpg", "a0.jpg", "a-b/y.jpg", "b/c/d.jpg", "b/c.jpg", "B.jpg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    files = list(ImageDirSource(str(tmp_path)).files())
    assert files == sorted(files) and len(files) == 7


def test_many_unlabelled_images_are_counted_and_twenty_named(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(60):
        (images / f"{i:03d}.jpg").write_bytes(b"x")
    (images / "notes.txt").write_bytes(b"not an image")
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{i:03d}.jpg {i % 3}\n" for i in range(0, 60, 2)))
    listing = read_items(ImageDirSource(str(images)), SpaceLabels(str(labels)))
    assert len(listing.items) == 30
    assert listing.unlabelled_count == 30
    assert listing.unlabelled == [f"{i:03d}.jpg" for i in range(1, 40, 2)]


def test_hard_links_and_symlinks_are_one_file_whatever_the_names(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"x")
    os.link(images / "a.jpg", images / "hard.jpg")
    os.symlink("a.jpg", images / "soft.jpg")
    (images / "b.jpg").write_bytes(b"y")
    labels = tmp_path / "labels.txt"
    labels.write_text("a.jpg 1\nb.jpg 2\nhard.jpg 1\nsoft.jpg 1\n")
    listing = read_items(ImageDirSource(str(images)), SpaceLabels(str(labels)))
    assert [item.name for item in listing.items] == ["a.jpg", "b.jpg"]
    assert [(s.source, s.reason.split(" (")[0]) for s in listing.skipped] == [("hard.jpg", "listed twice"), ("soft.jpg", "listed twice")]
    assert listing.unlabelled_count == 0  # hard.jpg and soft.jpg were labelled, as a.jpg


def test_a_file_named_through_a_symlinked_folder_is_the_same_image(tmp_path):
    """real/r.jpg and alias/r.jpg (alias -> real) are one file: listed twice with one label, written once; with
    two labels, an error naming both; named only through the alias, it is not unlabelled."""
    from prep.core.errors import InputError

    root = tmp_path / "images"
    (root / "real").mkdir(parents=True)
    (root / "real" / "r.jpg").write_bytes(b"x")
    (root / "real" / "s.jpg").write_bytes(b"y")
    os.symlink("real", root / "alias")
    labels = tmp_path / "labels.txt"
    labels.write_text("alias/r.jpg 1\nreal/s.jpg 2\nreal/r.jpg 1\n")
    listing = read_items(ImageDirSource(str(root)), SpaceLabels(str(labels)))
    assert [item.name for item in listing.items] == ["alias/r.jpg", "real/s.jpg"]
    assert [s.source for s in listing.skipped] == ["real/r.jpg"] and "the same file" in listing.skipped[0].reason
    assert listing.unlabelled_count == 0
    labels.write_text("alias/r.jpg 5\nreal/r.jpg 6\n")
    with pytest.raises(InputError, match="listed again with another label"):
        read_items(ImageDirSource(str(root)), SpaceLabels(str(labels)))


def test_a_folder_moved_out_of_the_image_folder_during_the_run_is_not_read(tmp_path):
    from prep.core.errors import EncodeError

    root, outside = tmp_path / "images", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    for i in range(3):
        (root / "sub" / f"{i}.jpg").write_bytes(b"inside")
    source = ImageDirSource(str(root))
    assert source.read("sub/0.jpg") == b"inside"
    os.rename(root / "sub", outside / "sub")
    (outside / "sub" / "1.jpg").write_bytes(b"outside")
    with pytest.raises(EncodeError):
        source.read("sub/1.jpg")
    os.symlink(outside / "sub", root / "sub")  # and brought back as a symlink leading outside
    with pytest.raises(EncodeError, match="outside"):
        source.read("sub/1.jpg")


def _folder_of_awkward_names(root) -> None:
    """Names resolve() treats specially: NFD on disk, a Kelvin sign (whose NFC form is the ASCII K), spaces at the
    ends, backslashes and colons in the name, a sub-folder, a FIFO, a symlink leading outside."""
    (root / "sub").mkdir(parents=True)
    for name in ["a.jpg", "sub/b.jpg", "cafe\u0301.jpg", "\u212a.jpg", " lead.jpg", "a\\b.png", "9:30.png", "C:.jpg"]:
        (root / name).write_bytes(b"x")
    os.mkfifo(root / "pipe.jpg")
    os.symlink("/etc/hostname", root / "out.jpg")


NAMES = [
    "a.jpg", "./a.jpg", "sub//b.jpg", "sub/./b.jpg", "sub/../a.jpg", "sub/b.jpg", "sub\\b.jpg", " a.jpg", "a.jpg ", "missing.jpg",
    "sub/missing.jpg", "caf\u00e9.jpg", "cafe\u0301.jpg", "K.jpg", "\u212a.jpg", "lead.jpg", " lead.jpg", "a\\b.png", "a/b.png",
    "9:30.png", "C:.jpg", "C:/x.jpg", "C:\\x.jpg", "/etc/hostname", "..", "../x.jpg", ".", "sub", "sub/", "pipe.jpg", "out.jpg",
    "a\0.jpg", "x/../../a.jpg", "\u00e9.jpg",
]


@pytest.mark.parametrize("symlinked_folder", [False, True])
def test_resolving_many_names_gives_what_resolving_each_gives(tmp_path, symlinked_folder):
    """resolve_many answers a plainly missing name without resolve()'s variants: the answers must be the same
    for every kind of name, found, missing or refused."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from prep.core.errors import EncodeError

    root = tmp_path / "images"
    _folder_of_awkward_names(root)
    if symlinked_folder:
        os.symlink("sub", root / "alias")
    source = ImageDirSource(str(root))

    def one(name):
        try:
            return source.resolve(name)
        except EncodeError as err:
            return f"error: {err}"

    def many(names):
        return [f"error: {r}" if isinstance(r, EncodeError) else r for r in source.resolve_many(names)]

    assert many(NAMES) == [one(name) for name in NAMES]
    assert "error: listed in the label file but missing from source.image_dir" in many(["missing.jpg"])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.text(alphabet="ab/.\\ :K\u212a\u00e9\u0301", min_size=1, max_size=8), min_size=1, max_size=20))
    def same(names):
        assert many(names) == [one(name) for name in names]

    same()
