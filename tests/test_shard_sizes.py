"""How records are shared out over shards: no one-record leftover, exact sizes when asked, seed 002 kept."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from test_config import composed, stages_of

from prep.core.errors import ConfigError
from prep.writers import TFRecordWriter

SLIM = {"image/encoded": "encoded", "image/class/label": "label"}


def sizes(n: int, **writer) -> list[int]:
    return TFRecordWriter(features=SLIM, **writer).shard_sizes(n, "train")


@given(n=st.integers(1, 5000), size=st.integers(1, 600))
@example(n=1, size=2)  # one record with shard_size=2: one shard (found by this property in CI-like run)
def test_even_fill_is_the_fewest_shards_of_at_most_shard_size_as_equal_as_possible(n, size):
    got = sizes(n, shard_size=size)
    assert sum(got) == n
    assert max(got) - min(got) <= 1
    if size == 2 and n % 2 and n > 1:  # 2 + 2 + 1 would leave one record: one shard takes 3
        assert len(got) == n // 2 and max(got) == 3
    else:
        assert len(got) == -(-n // size) and max(got) <= size
    if size > 1 and n > 1:
        assert min(got) > 1  # never a one-record leftover


@given(n=st.integers(1, 5000), size=st.integers(2, 600))
def test_exact_fill_keeps_shard_size_and_folds_a_single_leftover_into_the_shard_before(n, size):
    got = sizes(n, shard_size=size, shard_fill="exact")
    assert sum(got) == n
    if n > 1:
        assert got[-1] != 1
    if n % size == 1 and n > 1:
        assert got == [size] * (len(got) - 1) + [size + 1]
    else:
        assert got[:-1] == [size] * (len(got) - 1) and 0 < got[-1] <= size


@pytest.mark.parametrize(
    ("n", "writer", "expected"),
    [
        (10_001, {"shard_size": 5000}, [3334, 3334, 3333]),
        (10_001, {"shard_size": 5000, "shard_fill": "exact"}, [5000, 5001]),
        (10_002, {"shard_size": 5000, "shard_fill": "exact"}, [5000, 5000, 2]),
        (1, {"shard_size": 5000}, [1]),  # a split of one record: nothing else can hold it
        (7, {"shard_size": None, "num_shards": 3}, [3, 2, 2]),
    ],
)
def test_examples_from_the_readme(n, writer, expected):
    assert sizes(n, **writer) == expected


def test_seed_002_preset_writes_exactly_5000_per_shard(tmp_path):
    writer = stages_of(composed("dataset=imagenet_val", f"source.image_dir={tmp_path}", f"labels.path={tmp_path / 'val.txt'}"))["writer"]
    assert writer.shard_fill == "exact"
    assert writer.shard_sizes(50_000, "validation") == [5000] * 10
    assert writer.shard_sizes(50_001, "validation") == [5000] * 9 + [5001]
    assert writer.shard_sizes(52_500, "validation") == [5000] * 10 + [2500]


def test_an_unknown_fill_is_named():
    with pytest.raises(ConfigError, match=r"writer.shard_fill='full': choose even or exact"):
        sizes(10, shard_size=5, shard_fill="full")
