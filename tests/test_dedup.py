"""Duplicates found by the content scan: never split across train/validation/test, reported, one copy with
dedup_keep=first, conflicts by on_error; near copies grouped with dedup=near."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import crop, jpeg_bytes, png_bytes, run_prep
from split_helpers import class_folders, resized_copy, run, split_of_files, write

from prep.core.errors import InputError
from prep.split import FolderSplit, NoSplit, StratifiedSplit


@pytest.fixture
def planted(tmp_path, photos):
    """60 images in 3 classes, plus: 4 copies of cat/000 under other names in cat/ (one in a subfolder), and a
    copy of dog/001 named like a different file in dog/; a copy of owl/002 filed under cat/ (a conflict)."""
    root = tmp_path / "images"
    class_folders(root, photos)
    cat = (root / "cat/000.jpg").read_bytes()
    for name in ("cat/copy-a.jpg", "cat/copy-b.jpeg", "cat/zz/again.jpg", "cat/IMG_0001.JPG"):
        write(root, name, cat)
    write(root, "dog/renamed.jpg", (root / "dog/001.jpg").read_bytes())
    return root


def groups_by_first(summary):
    return {g["names"][0]: g for g in summary["duplicates"]["groups"]}


@pytest.mark.parametrize("seed", range(6))
def test_exact_copies_share_a_split_and_are_reported(tmp_path, planted, seed):
    summary = run(tmp_path / f"out{seed}", planted, StratifiedSplit(0.2, 0.2, seed=seed))
    where = split_of_files(tmp_path / f"out{seed}")
    groups = groups_by_first(summary)
    cat = groups["cat/000.jpg"]
    assert sorted(cat["names"]) == sorted(["cat/000.jpg", "cat/IMG_0001.JPG", "cat/copy-a.jpg", "cat/copy-b.jpeg", "cat/zz/again.jpg"])
    assert cat["kind"] == "exact" and not cat["conflict"] and all(cat["kept"])
    assert len({where[name] for name in cat["names"]}) == 1  # every copy written, all in one split
    assert cat["splits"] == [where[name] for name in cat["names"]]
    dog = groups["dog/001.jpg"]
    assert len({where[name] for name in dog["names"]}) == 1
    assert summary["num_records"] == 65 and summary["duplicates"]["dropped"] == 0
    # the split is still stratified: every class's validation and test share near its target
    for label, per_split in summary["split_balance"].items():
        for split in ("validation", "test"):
            assert abs(per_split[split]["achieved"] - 0.2) <= 0.1, (label, per_split)
    assert summary["scan"]["images"] == 65 and summary["scan"]["hashed"]


def test_keep_first_writes_one_copy(tmp_path, planted):
    summary = run(tmp_path / "out", planted, StratifiedSplit(0.2, 0.2, dedup_keep="first"))
    where = split_of_files(tmp_path / "out")
    assert summary["num_records"] == 60 and summary["duplicates"]["dropped"] == 5
    cat = groups_by_first(summary)["cat/000.jpg"]
    assert cat["kept"] == [True, False, False, False, False]
    assert [n for n in cat["names"] if n in where] == ["cat/000.jpg"]
    assert summary["skipped"] == []  # dropping a copy is no skip


def test_conflicting_copies_are_skipped_with_on_error_skip(tmp_path, planted):
    write(planted, "cat/looks-like-an-owl.jpg", (planted / "owl/002.jpg").read_bytes())
    summary = run(tmp_path / "out", planted, StratifiedSplit(0.2, 0.2))
    where = split_of_files(tmp_path / "out")
    conflict = groups_by_first(summary)["cat/looks-like-an-owl.jpg"]
    assert conflict["conflict"] and conflict["kept"] == [False, False] and conflict["labels"] == [0, 2]
    assert "cat/looks-like-an-owl.jpg" not in where and "owl/002.jpg" not in where
    reasons = {s["source"]: s["reason"] for s in summary["skipped"]}
    assert "duplicate conflict" in reasons["owl/002.jpg"] and "cat/looks-like-an-owl.jpg" in reasons["owl/002.jpg"]
    assert summary["duplicates"]["conflicts"] == 1


def test_conflicting_copies_stop_the_run_with_on_error_fail(tmp_path, planted):
    write(planted, "cat/looks-like-an-owl.jpg", (planted / "owl/002.jpg").read_bytes())
    with pytest.raises(InputError, match="different labels: cat/looks-like-an-owl.jpg \\(cat\\), owl/002.jpg \\(owl\\)"):
        run(tmp_path / "out", planted, StratifiedSplit(0.2, 0.2), on_error="fail")
    assert not (tmp_path / "out").exists()  # stopped before the output folder was touched


def test_conflict_is_one_line_on_the_command_line(tmp_path, planted):
    write(planted, "cat/looks-like-an-owl.jpg", (planted / "owl/002.jpg").read_bytes())
    proc = run_prep(
        "dataset=images", f"source.image_dir={planted}", "labels=subdirs", "split=stratified", "on_error=fail",
        f"hydra.run.dir={tmp_path / 'run'}", "progress=false", check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "error: the same image with different labels" in proc.stderr


def test_dedup_none_does_not_hash_and_reports_nothing(tmp_path, planted):
    summary = run(tmp_path / "out", planted, StratifiedSplit(0.2, 0.2, dedup="none"))
    assert summary["duplicates"] == {"mode": "none"} and not summary["scan"]["hashed"]
    assert summary["num_records"] == 65


def test_near_copies_are_grouped_with_dedup_near_only(tmp_path, photos):
    root = tmp_path / "images"
    class_folders(root, photos, per_class=12)
    big = crop(photos, 5, size=300)  # a photo large enough for a real thumbnail
    write(root, "cat/original.jpg", jpeg_bytes(big, quality=95))
    write(root, "cat/thumb.jpg", resized_copy(big, 0.4, quality=75))
    write(root, "dog/resaved.jpg", resized_copy(big, 0.8, quality=60))  # also a conflict (another class)
    exact = run(tmp_path / "exact", root, StratifiedSplit(0.2, 0.2))
    assert exact["duplicates"]["groups"] == []
    near = run(tmp_path / "near", root, StratifiedSplit(0.2, 0.2, dedup="near", seed=1))
    groups = [g for g in near["duplicates"]["groups"] if "cat/original.jpg" in g["names"]]
    assert len(groups) == 1 and sorted(groups[0]["names"]) == ["cat/original.jpg", "cat/thumb.jpg", "dog/resaved.jpg"]
    group = groups[0]
    assert group["kind"] == "near" and group["conflict"]
    assert all(group["kept"])  # a near match is no proof: listed, kept, together
    where = split_of_files(tmp_path / "near")
    assert len({where[n] for n in group["names"]}) == 1
    assert near["scan"]["perceptual"]
    # unrelated crops are not near each other
    assert all("cat/original.jpg" in g["names"] for g in near["duplicates"]["groups"])


def test_duplicates_across_given_splits_are_leaks_and_keep_first_keeps_the_test_copy(tmp_path, photos):
    root = tmp_path / "images"
    for split, start in (("train", 0), ("val", 100), ("test", 200)):
        class_folders(root / split, photos, classes=("cat", "dog"), per_class=5, start=start)
    write(root, "train/dog/leaked.jpg", (root / "test/cat/000.jpg").read_bytes())  # also another label
    write(root, "train/cat/leaked.jpg", (root / "val/cat/000.jpg").read_bytes())
    summary = run(tmp_path / "all", root, FolderSplit())
    leak = groups_by_first(summary)["train/cat/leaked.jpg"]
    assert leak["splits"] == ["train", "validation"] and all(leak["kept"])
    assert any("leakage" in w for w in summary["warnings"])
    assert "leakage" in (tmp_path / "all/report.html").read_text()  # the report shows every warning
    summary = run(tmp_path / "first", root, FolderSplit(dedup_keep="first"))
    leak = groups_by_first(summary)["train/cat/leaked.jpg"]
    assert leak["kept"] == [False, True]  # the validation copy stays, train loses its copy
    where = split_of_files(tmp_path / "first")
    assert "train/cat/leaked.jpg" not in where and where["val/cat/000.jpg"] == "validation"


def test_scan_skips_bad_files_before_splitting_so_fractions_hold(tmp_path, photos):
    root = tmp_path / "images"
    class_folders(root, photos, classes=("cat",), per_class=30)
    for i in range(10):
        data = (root / f"cat/{i:03d}.jpg").read_bytes()
        (root / f"cat/{i:03d}.jpg").write_bytes(data[: len(data) // 2])  # cut short
    summary = run(tmp_path / "out", root, StratifiedSplit(0.1, 0.1))
    assert len(summary["skipped"]) == 10 and all("truncated" in s["reason"] for s in summary["skipped"])
    # 20 good images: 2 + 2 + 16, exactly as if the bad files had never been there
    assert {s: v["num_records"] for s, v in summary["splits"].items()} == {"train": 16, "validation": 2, "test": 2}


def test_scan_result_is_the_same_for_any_number_of_workers(tmp_path, planted):
    one = run(tmp_path / "one", planted, StratifiedSplit(0.2, 0.2, dedup="near"), workers=1)
    two = run(tmp_path / "two", planted, StratifiedSplit(0.2, 0.2, dedup="near"), workers=2)
    assert one["duplicates"] == two["duplicates"]
    assert [s["sha256"] for s in one["shards"]] == [s["sha256"] for s in two["shards"]]


def test_no_split_can_drop_copies_too(tmp_path, planted):
    summary = run(tmp_path / "out", planted, NoSplit(dedup="exact", dedup_keep="first"))
    assert summary["num_records"] == 60
    assert json.loads((tmp_path / "out/summary.json").read_text())["duplicates"]["dropped"] == 5


def test_byte_identical_copies_with_different_labels_are_a_conflict_inside_a_near_group(tmp_path, photos):
    root = tmp_path / "images"
    class_folders(root, photos, per_class=12)
    big = crop(photos, 5, size=300)
    write(root, "cat/original.jpg", jpeg_bytes(big, quality=95))
    write(root, "dog/same-bytes.jpg", jpeg_bytes(big, quality=95))  # the same file, another label
    write(root, "cat/thumb.jpg", resized_copy(big, 0.4, quality=75))  # a near copy joins the group
    summary = run(tmp_path / "out", root, StratifiedSplit(0.2, 0.2, dedup="near"))
    where = split_of_files(tmp_path / "out")
    assert "cat/original.jpg" not in where and "dog/same-bytes.jpg" not in where  # never written with two labels
    assert {s["source"] for s in summary["skipped"]} == {"cat/original.jpg", "dog/same-bytes.jpg"}
    with pytest.raises(InputError, match="the same image with different labels: cat/original.jpg \\(cat\\), dog/same-bytes.jpg \\(dog\\)"):
        run(tmp_path / "fail", root, StratifiedSplit(0.2, 0.2, dedup="near"), on_error="fail")


def test_near_groups_do_not_chain_and_blank_images_match_nothing(tmp_path, photos):
    from prep.run.dedup import near_leaders
    from prep.run.scan import dhash_pixels

    a = 0
    b = 0b1111  # 4 bits from a
    c = 0b11111111  # 4 bits from b, 8 from a
    joined = near_leaders([("a", 0, a), ("b", 1, b), ("c", 2, c)], 5)
    assert joined == {1: 0}  # c is not pulled into a's group through b
    assert dhash_pixels(np.zeros((40, 50, 3), np.uint8)) is None and dhash_pixels(np.full((9, 9), 255, np.uint8)) is None
    root = tmp_path / "images"
    class_folders(root, photos, per_class=8)
    for i, (cls, shade) in enumerate((("cat", 0), ("dog", 255), ("owl", 128))):
        write(root, f"{cls}/blank.png", png_bytes(np.full((30 + i, 40, 3), shade, np.uint8)))
    summary = run(tmp_path / "out", root, StratifiedSplit(0.2, 0.2, dedup="near"))
    assert not any("blank" in n for g in summary["duplicates"]["groups"] for n in g["names"])


def test_every_image_scanned_out_is_one_line(tmp_path):
    root = tmp_path / "images"
    for i in range(4):
        write(root, f"c{i % 2}/{i}.jpg", b"\xff\xd8\xff garbage")
    with pytest.raises(InputError, match="no usable images: the content scan left out every image"):
        run(tmp_path / "out", root, StratifiedSplit(0.2, 0.2, group_by="^(.)"))
