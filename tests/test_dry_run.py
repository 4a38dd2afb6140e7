"""dry_run=true: everything up to the first shard, a table and warnings, plan.json, and no shard."""

from __future__ import annotations

import json
import os

import pytest
from conftest import crop, jpeg_bytes, run_prep
from split_helpers import class_folders, run, write

from prep.core.errors import ConfigError
from prep.split import StratifiedSplit


@pytest.fixture
def messy(tmp_path, photos):
    """3 classes (one 10x smaller), a planted duplicate, a truncated file, a Jupyter checkpoint folder."""
    root = tmp_path / "images"
    class_folders(root, photos, classes=("cat", "dog"), per_class=30)
    class_folders(root, photos, classes=("rare",), per_class=3, start=500)
    write(root, "dog/copy.jpg", (root / "cat/000.jpg").read_bytes())  # a conflict: skipped, both copies
    write(root, "cat/copy.jpg", (root / "cat/002.jpg").read_bytes())
    data = (root / "dog/001.jpg").read_bytes()
    (root / "dog/001.jpg").write_bytes(data[:300])
    write(root, "cat/.ipynb_checkpoints/000-checkpoint.jpg", (root / "cat/004.jpg").read_bytes())
    return root


def test_dry_run_writes_the_plan_and_no_shard_and_the_real_run_matches_it(tmp_path, messy, capsys):
    out = tmp_path / "out"
    plan = run(out, messy, StratifiedSplit(0.2, 0.1), dry_run=True)
    assert sorted(os.listdir(out)) == [".prep-lock", "plan.json"]  # no shard, no summary
    assert json.loads((out / "plan.json").read_text()) == plan
    table = capsys.readouterr().out
    assert "validation" in table and "est. size" in table and "warning:" in table
    warnings = "\n".join(plan["warnings"])
    assert "duplicate group(s)" in warnings and "different labels" in warnings
    assert "1 class(es) have at most 1/10 of the largest class's" in warnings and "rare (3)" in warnings
    assert "hidden" in warnings and ".ipynb_checkpoints" not in plan["label_map"]
    assert [s["source"] for s in plan["skipped"]] == ["dog/001.jpg", "cat/000.jpg", "dog/copy.jpg"]
    assert all(s["estimated_bytes"] > 0 for s in plan["shards"])

    summary = run(out, messy, StratifiedSplit(0.2, 0.1))
    for key in ("num_records", "label_map", "duplicates", "split_balance"):
        assert summary[key] == plan[key], key
    for split, info in plan["splits"].items():
        assert {k: summary["splits"][split][k] for k in ("num_records", "num_shards", "classes")} == {
            k: info[k] for k in ("num_records", "num_shards", "classes")
        }
    assert [(s["path"], s["num_records"]) for s in summary["shards"]] == [(s["path"], s["num_records"]) for s in plan["shards"]]
    assert sum(s["bytes"] for s in summary["shards"]) >= sum(s["estimated_bytes"] for s in plan["shards"])
    assert summary["skipped"] == plan["skipped"]
    assert json.loads((out / "plan.json").read_text())["splits"] == plan["splits"]  # the real run's own plan.json


def test_dry_run_does_not_touch_a_finished_run(tmp_path, messy):
    out = tmp_path / "out"
    run(out, messy, StratifiedSplit(0.2, 0.1))
    before = {name: (out / name).read_bytes() for name in os.listdir(out) if (out / name).is_file()}
    with pytest.raises(ConfigError, match="already holds a finished run"):
        run(out, messy, StratifiedSplit(0.3, 0.1), dry_run=True)
    assert {name: (out / name).read_bytes() for name in os.listdir(out) if (out / name).is_file()} == before


def test_dry_run_on_the_command_line(tmp_path, messy):
    proc = run_prep(
        "dataset=images", f"source.image_dir={messy}", "labels=subdirs", "split=stratified", "dry_run=true",
        f"hydra.run.dir={tmp_path / 'run'}", "progress=false",
    )
    assert "split" in proc.stdout and "(all)" in proc.stdout and "warning:" in proc.stdout
    assert "without dry_run=true" in proc.stderr and "prep-verify" not in proc.stderr
    files = sorted(os.listdir(tmp_path / "run"))
    assert "plan.json" in files and "summary.json" not in files and not any(f.endswith(".tfrecord") or "tfrecord-" in f for f in files)
    # the real run in the same folder, after the dry run, is accepted
    run_prep(
        "dataset=images", f"source.image_dir={messy}", "labels=subdirs", "split=stratified",
        f"hydra.run.dir={tmp_path / 'run'}", "progress=false",
    )
    assert (tmp_path / "run/summary.json").exists()


def test_dry_run_without_a_scan_estimates_from_file_sizes(tmp_path, photos):
    from prep.split import NoSplit

    root = tmp_path / "images"
    names = class_folders(root, photos, classes=("a", "b"), per_class=4)
    plan = run(tmp_path / "out", root, NoSplit(), dry_run=True)
    total = sum((root / n).stat().st_size for ns in names.values() for n in ns)
    assert plan["splits"]["train"]["estimated_bytes"] == total and plan["scan"] is None


def test_dry_run_with_overwrite_leaves_a_finished_run_as_it_is(tmp_path, messy):
    run_prep("dataset=images", f"source.image_dir={messy}", "labels=subdirs", "split=stratified", f"hydra.run.dir={tmp_path / 'run'}", "progress=false")
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    proc = run_prep(
        "dataset=images", f"source.image_dir={messy}", "labels=subdirs", "split=stratified", "split.val=0.3", "dry_run=true",
        "overwrite=true", f"hydra.run.dir={tmp_path / 'run'}", "progress=false",
    )
    assert "plan.json not written" in proc.stderr and "(all)" in proc.stdout
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


def test_dry_run_says_when_the_real_run_would_stop_on_max_skipped(tmp_path, messy):
    plan = run(tmp_path / "out", messy, StratifiedSplit(0.2, 0.1), dry_run=True, max_skipped=1)
    assert any(w.startswith("the real run would stop: 3 images skipped, more than max_skipped=1") for w in plan["warnings"])


def test_a_class_left_without_images_is_named(tmp_path, messy):
    write(messy, "tiny/only.jpg", (messy / "cat/006.jpg").read_bytes())
    plan = run(tmp_path / "out", messy, StratifiedSplit(0.2, 0.1, dedup_keep="first"), dry_run=True)
    assert any("1 class(es) have no image left to write" in w and "'tiny'" in w for w in plan["warnings"])
