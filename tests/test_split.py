"""Stratified splits: exact per class, disjoint, reproducible, independent of listing order."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from prep.core.errors import ConfigError
from prep.core.values import Item
from prep.split import NoSplit, StratifiedSplit

SIZES = {0: 1, 1: 2, 2: 7, 3: 10, 4: 33, 5: 101, 6: 250}  # an uneven multi-class folder


def uneven_items() -> list[Item]:
    return [Item(f"c{label}/img_{i:04d}.jpg", label, f"c{label}/img_{i:04d}.jpg") for label, n in SIZES.items() for i in range(n)]


@pytest.mark.parametrize("val, test", [(0.2, 0.1), (0.1, 0.1), (0.33, 0.33), (0.0, 0.25), (0.05, 0.0)])
def test_every_class_is_split_within_one_image_and_nothing_is_lost(val, test):
    items = uneven_items()
    splits = StratifiedSplit(val=val, test=test, seed=3).assign(items)
    names = [item.name for members in splits.values() for item in members]
    assert sorted(names) == sorted(item.name for item in items)  # union is the input, no duplicates
    for label, size in SIZES.items():
        for split, fraction in (("validation", val), ("test", test)):
            got = sum(1 for item in splits.get(split, []) if item.label == label)
            assert abs(got - fraction * size) <= 1, (label, split, got)
        assert sum(1 for item in splits["train"] if item.label == label) >= 1


def test_same_seed_same_assignment_whatever_the_listing_order():
    items = uneven_items()
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    a = StratifiedSplit(0.2, 0.1, seed=11).assign(items)
    b = StratifiedSplit(0.2, 0.1, seed=11).assign(shuffled)
    assert {k: [i.name for i in v] for k, v in a.items()} == {k: [i.name for i in v] for k, v in b.items()}
    c = StratifiedSplit(0.2, 0.1, seed=12).assign(items)
    assert {i.name for i in a["test"]} != {i.name for i in c["test"]}


def test_shuffle_mixes_classes_and_can_be_turned_off():
    items = uneven_items()
    shuffled = StratifiedSplit(0.2, 0.1, seed=0).assign(items)["train"]
    labels = [item.label for item in shuffled[:50]]
    assert len(set(labels)) > 2
    ordered = StratifiedSplit(0.2, 0.1, seed=0, shuffle=False).assign(items)["train"]
    assert ordered == [item for item in items if item in set(ordered)]  # label-file order kept


def test_small_classes_are_kept_in_train_and_noted():
    splitter = StratifiedSplit(0.2, 0.1, seed=0)
    splits = splitter.assign(uneven_items())
    assert [item.label for item in splits["train"] if item.label in (0, 1)] != []
    assert not any(item.label in (0, 1) for item in splits["test"] + splits["validation"])
    assert splitter.notes == [
        "class 0 has 1 image(s): too few for validation and test, kept in train",
        "class 1 has 2 image(s): too few for validation and test, kept in train",
    ]
    splitter = StratifiedSplit(0.2, 0.04, seed=0)  # 0.04 x 10 rounds to no test image for class 3
    splitter.assign(uneven_items())
    assert "class 3 has 10 image(s): too few for test, kept in train" in splitter.notes


@pytest.mark.parametrize("val, test, message", [(0.6, 0.4, "add up to 1"), (-0.1, 0.1, "split.val=-0.1"), (0.1, 1.0, "split.test=1.0")])
def test_impossible_fractions_are_config_errors(val, test, message):
    with pytest.raises(ConfigError, match=message):
        StratifiedSplit(val, test)


def test_no_split_keeps_order_or_shuffles_by_seed():
    items = uneven_items()
    assert NoSplit("validation").assign(items) == {"validation": items}
    shuffled = NoSplit(shuffle=True, seed=1).assign(items)["train"]
    assert shuffled != items and Counter(shuffled) == Counter(items)
    assert NoSplit(shuffle=True, seed=1).assign(list(reversed(items)))["train"] == shuffled
