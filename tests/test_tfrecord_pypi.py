"""The `tfrecord` PyPI reader (PyTorch users' TFRecord reader) reads every shard prep writes, index files included.

That reader cannot read a shard of exactly one record through its index (np.loadtxt of a one-line index is
1-D): prep never leaves a one-record shard over, whichever shard_fill (tests/test_shard_sizes.py has the rule).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
from test_pipeline import SLIM

from prep.encoders.image import ImageEncoder
from prep.executors.local import LocalExecutor
from prep.labels.embedded import EmbeddedLabels
from prep.pipeline import convert
from prep.sources.digits import DigitsSource
from prep.split import StratifiedSplit
from prep.writers import TFRecordWriter

# The reader runs in a subprocess: the tfrecord package registers its own copy of example.proto under
# TensorFlow's proto names, after which TensorFlow itself no longer imports in that process.
READ = """
import json, sys
from tfrecord import reader
labels = {}
for path in sys.argv[1:]:
    found = reader.tfrecord_loader(path, path + ".idx", {"image/class/label": "int", "image/encoded": "byte"})
    labels[path] = [int(r["image/class/label"][0]) for r in found]
print(json.dumps(labels))
"""


@pytest.mark.parametrize("fill", ["even", "exact"])
def test_every_shard_and_split_reads_through_its_index(tmp_path, fill):
    # 201 digits split 0.8/0.1/0.1: 161 + 20 + 20 records, at 20 per shard a leftover of one in train.
    out = tmp_path / fill
    summary = convert(
        name="digits", source=DigitsSource(), labels=EmbeddedLabels(), splitter=StratifiedSplit(val=0.1, test=0.1, seed=0),
        encoder=ImageEncoder(format="png"), writer=TFRecordWriter(shard_size=20, features=SLIM, dali_index=True, shard_fill=fill),
        executor=LocalExecutor(1), output_dir=str(out), limit=201, progress=False,
    )
    assert summary["splits"]["train"]["num_records"] % 20 == 1  # the case that left a one-record shard
    assert min(s["num_records"] for s in summary["shards"]) > 1
    paths = [str(out / shard["path"]) for shard in summary["shards"]]
    read = json.loads(subprocess.run([sys.executable, "-c", READ, *paths], capture_output=True, text=True, check=True).stdout)
    labels = []
    for shard, path in zip(summary["shards"], paths):
        assert len(read[path]) == shard["num_records"]
        labels += read[path]
    assert len(labels) == summary["num_records"] == 201
    expected = Counter()
    for split in summary["splits"].values():
        expected.update({int(label): count for label, count in split["classes"].items()})
    assert Counter(labels) == expected
