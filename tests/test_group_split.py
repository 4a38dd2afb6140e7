"""split.group_by: no group in two splits, for any seed and grouping; class proportions as close as groups allow."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import crop, jpeg_bytes
from hypothesis import given, settings
from hypothesis import strategies as st
from split_helpers import run, split_of_files, write

from prep.core.errors import ConfigError
from prep.core.values import Item
from prep.labels.csv import CsvLabels
from prep.labels.space import SpaceLabels
from prep.split import StratifiedSplit
from prep.split.stratified import split_counts


def items_of(groups: list[tuple[int, int]]) -> list[Item]:
    """groups: (size, label) -> items named patient<g>_<n>.png"""
    out = []
    for g, (size, label) in enumerate(groups):
        out += [Item(f"patient{g}_{n:03d}.png", label, f"patient{g}_{n:03d}.png") for n in range(size)]
    return out


@settings(max_examples=200, deadline=None)
@given(
    groups=st.lists(st.tuples(st.integers(1, 12), st.integers(0, 3)), min_size=1, max_size=60),
    seed=st.integers(0, 2**31),
    val=st.sampled_from([0.0, 0.1, 0.2, 0.25]),
    test=st.sampled_from([0.0, 0.1, 0.15, 0.3]),
)
def test_no_group_is_in_two_splits(groups, seed, val, test):
    items = items_of(groups)
    splitter = StratifiedSplit(val, test, seed=seed, group_by=r"^(patient\d+)_")
    splits = splitter.assign(items)
    where = {}
    for split, members in splits.items():
        for item in members:
            assert item.name not in where
            where[item.name] = split
    assert len(where) == len(items)  # nothing lost, nothing twice
    for g in range(len(groups)):
        assert len({s for name, s in where.items() if name.startswith(f"patient{g}_")}) == 1
    # reported fractions are what the splits hold
    for label, per_split in splitter.balance.items():
        total = sum(v["images"] for v in per_split.values())
        for split, value in per_split.items():
            assert value["achieved"] == round(value["images"] / total, 4)
    # deterministic for a seed, whatever the listing order
    again = StratifiedSplit(val, test, seed=seed, group_by=r"^(patient\d+)_").assign(list(reversed(items)))
    assert {s: sorted(i.name for i in m) for s, m in again.items()} == {s: sorted(i.name for i in m) for s, m in splits.items()}


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6), seed=st.integers(0, 1000))
def test_single_image_groups_split_exactly_as_without_groups(sizes, seed):
    items = [Item(f"c{label}_{n}.png", label, f"c{label}_{n}.png") for label, size in enumerate(sizes) for n in range(size)]
    plain = StratifiedSplit(0.2, 0.1, seed=seed).assign(items)
    grouped = StratifiedSplit(0.2, 0.1, seed=seed, group_by=r"^(c\d+_\d+)").assign(items)
    assert plain == grouped
    for label, size in enumerate(sizes):
        n_val, n_test = split_counts(size, 0.2, 0.1)
        assert Counter(i.label for i in plain.get("validation", []))[label] == n_val
        assert Counter(i.label for i in plain.get("test", []))[label] == n_test


def test_groups_of_equal_size_come_close_to_the_targets():
    # 40 patients of 5 images in each of 2 classes: 10% is 4 patients per class, exactly reachable
    items = items_of([(5, g % 2) for g in range(80)])
    splitter = StratifiedSplit(0.1, 0.1, seed=3, group_by=r"^(patient\d+)_")
    splits = splitter.assign(items)
    for label in ("0", "1"):
        assert splitter.balance[label]["validation"]["images"] == 20
        assert splitter.balance[label]["test"]["images"] == 20
        assert splitter.balance[label]["test"]["target"] == 0.1
    assert {s: len(m) for s, m in splits.items()} == {"train": 320, "validation": 40, "test": 40}


def test_a_group_larger_than_a_target_still_gives_the_split_something():
    items = items_of([(12, 0)] * 8)  # 96 images, 10% = 9.6: the closest is one group of 12, not none
    splits = StratifiedSplit(0.1, 0.1, seed=0, group_by=r"^(patient\d+)_").assign(items)
    assert {s: len(m) for s, m in splits.items()} == {"train": 72, "validation": 12, "test": 12}


def test_group_column_of_a_csv_label_file(tmp_path, photos):
    root = tmp_path / "images"
    lines = ["file,label,patient"]
    for i in range(60):
        name = write(root, f"scan{i:03d}.jpg", jpeg_bytes(crop(photos, i)))
        lines.append(f"{name},{'sick' if i % 3 == 0 else 'well'},p{i % 15}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    labels = CsvLabels(str(tmp_path / "labels.csv"), filename_column="file")
    summary = run(tmp_path / "out", root, StratifiedSplit(0.2, 0.2, seed=5, group_by="patient"), labels=labels)
    where = split_of_files(tmp_path / "out")
    for p in range(15):
        assert len({where[f"scan{i:03d}.jpg"] for i in range(60) if i % 15 == p}) == 1
    assert summary["groups"] == {"by": "patient", "groups": 15, "unmatched": 0}
    assert set(summary["split_balance"]) == {"0", "1"}
    for per_split in summary["split_balance"].values():
        assert per_split["train"]["target"] == 0.6


def test_regex_that_matches_nothing_is_an_error_and_some_unmatched_is_a_note(tmp_path, photos):
    items = items_of([(3, 0)] * 5)
    with pytest.raises(Exception, match="no image is in a group"):
        StratifiedSplit(0.2, 0.2, group_by=r"^(nobody)_").assign(items)
    splitter = StratifiedSplit(0.2, 0.2, group_by=r"^(patient[0-2])_")
    splitter.assign(items)
    assert splitter.groups_info["unmatched"] == 6 and any("each is a group of its own" in n for n in splitter.notes)


def test_group_by_settings_are_checked():
    with pytest.raises(ConfigError, match="exactly one capture group"):
        StratifiedSplit(group_by=r"^(a)(b)")
    with pytest.raises(ConfigError, match="not a regular expression"):
        StratifiedSplit(group_by=r"^(a")
    with pytest.raises(ConfigError, match="has no columns"):
        StratifiedSplit(group_by="patient").prepare(SpaceLabels("x.txt"))


def test_group_column_missing_from_the_csv_names_the_line(tmp_path, photos):
    root = tmp_path / "images"
    write(root, "a.jpg", jpeg_bytes(crop(photos, 0)))
    (tmp_path / "labels.csv").write_text("filename,label\na.jpg,1\n")
    with pytest.raises(Exception, match=r"labels.csv:1: no column split.group_by='patient'"):
        run(tmp_path / "out", root, StratifiedSplit(group_by="patient"), labels=CsvLabels(str(tmp_path / "labels.csv")))


def test_a_split_with_a_target_but_no_image_is_in_the_balance():
    items = items_of([(5, 0)] * 4)  # 20 images in groups of 5: 10% validation cannot be met
    splitter = StratifiedSplit(0.1, 0.25, seed=0, group_by=r"^(patient\d+)_")
    splits = splitter.assign(items)
    assert "validation" not in splits
    assert splitter.balance["0"]["validation"] == {"images": 0, "achieved": 0.0, "target": 0.1}


def test_single_images_are_shared_in_proportion_when_a_group_took_too_much():
    items = items_of([(1001, 0)]) + [Item(f"single{n:03d}.png", 0, f"single{n:03d}.png") for n in range(29)]
    splits = StratifiedSplit(0.2, 0.2, seed=0, group_by=r"^(patient\d+)_").assign(items)
    sizes = {s: len(m) for s, m in splits.items()}
    assert sizes["train"] == 1001 and abs(sizes["validation"] - sizes["test"]) <= 1 and sizes["validation"] + sizes["test"] == 29
