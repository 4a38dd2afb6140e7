"""Reference runs pinned by sha256: the same inputs and config give the same bytes, release after release.

Each case runs the real CLI on inputs made here from scikit-learn's pictures, then hashes every file the
run wrote (shards, index and metadata files, summary.json, plan.json, report.html, labels.csv). The pins in
reference_runs.json were taken before the code was reorganised; a move that changes a byte fails here.

summary.json, plan.json and report.html hold the run's own timings (seconds, records per second): those
values are blanked before hashing, nothing else. The inputs are pinned too: an OpenCV or Pillow build that
encodes the test pictures differently makes other inputs, and the case says so instead of failing on the
outputs. To take new pins after a deliberate change of output: PREP_REPIN=1 pytest tests/test_reference_runs.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from conftest import crop, jpeg_bytes, make_imagenet_folder, png_bytes, run_prep

pytestmark = pytest.mark.slow
PINS = Path(__file__).with_name("reference_runs.json")
CLASSES = ("daisy", "rose", "tulip", "sunflower")


def _inputs(root: Path, photos) -> dict[str, Path]:
    """Two folders: ImageNet-val-like (PNG named .JPEG, grayscale, progressive, CMYK; val.txt of ints) and
    a class-named CSV set with patients (groups), copies of one image under two names, and uneven classes."""
    imagenet = make_imagenet_folder(root / "imagenet", photos, count=30, classes=4)
    photos_dir = root / "photos" / "images"
    photos_dir.mkdir(parents=True)
    rows = ["file,label,patient"]
    for i in range(40):
        name = f"p{i % 13:02d}_{i:03d}" + (".png" if i % 9 == 4 else ".jpg")
        rgb = crop(photos, 100 + (i if i % 17 != 16 else 3))  # every 17th image a copy of image 3
        data = png_bytes(rgb) if name.endswith(".png") else jpeg_bytes(rgb)
        (photos_dir / name).write_bytes(data)
        rows.append(f"{name},{CLASSES[(i * 3) % 4 if i % 5 else 0]},p{i % 13:02d}")
    (root / "photos" / "labels.csv").write_text("\r\n".join(rows) + "\r\n")  # CRLF, as spreadsheets save it
    # relative to root, where the runs start: the paths are part of the config and so of summary.json
    paths = {"imagenet": imagenet.root, "imagenet_labels": imagenet.labels, "photos": photos_dir, "photos_labels": root / "photos" / "labels.csv"}
    return {key: path.relative_to(root) for key, path in paths.items()}


def _cases(paths: dict[str, Path]) -> dict[str, list[str]]:
    imagenet = ["dataset=imagenet_val", f"source.image_dir={paths['imagenet']}", f"labels.path={paths['imagenet_labels']}"]
    photos = ["dataset=images", f"source.image_dir={paths['photos']}", "labels=csv", f"labels.path={paths['photos_labels']}",
              "labels.filename_column=file"]
    return {
        "demo": [],  # `make run`: scikit-learn's digits, PNG-encoded, TFRecord
        "imagenet_passthrough": [*imagenet, "writer.shard_size=7"],
        "imagenet_stratified_tfds": ["dataset=images", f"source.image_dir={paths['imagenet']}", "labels=space", f"labels.path={paths['imagenet_labels']}",
                                     "split=stratified", "features=tfds", "writer.pattern='{dataset}-{split}.tfrecord-{index:05d}-of-{count:05d}'",
                                     "writer.shard_size=6"],
        "photos_grouped_webdataset": [*photos, "split=stratified", "split.group_by=patient", "split.val=0.2", "split.test=0.2", "writer=webdataset",
                                      "writer.shard_size=9"],
        "photos_near_jpeg_arrayrecord": [*photos, "split=stratified", "split.dedup=near", "split.dedup_keep=first", "encoder=jpeg", "encoder.resize=40",
                                         "writer=arrayrecord", "writer.shard_size=8"],
        "imagenet_raw_ofrecord": [*imagenet, "encoder=raw", "writer=ofrecord", "features=oneflow", "+features.height=height", "+features.width=width", "+features.channels=channels", "encoder.resize=24", "encoder.channels=3",
                                  "writer.pattern='part-{index:05d}'", "writer.shard_size=null", "writer.num_shards=3"],
        "photos_dry_run": [*photos, "split=stratified", "split.group_by=patient", "dry_run=true"],
    }


_VOLATILE = ("seconds", "records_per_second")
_VOLATILE_HTML = re.compile(r'(data-key="\[[^"]*&quot;(?:seconds|records_per_second)&quot;\]" data-value=")[^"]*(">)[^<]*')


def _blank(value):
    if isinstance(value, dict):
        return {k: (None if k in _VOLATILE else _blank(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_blank(v) for v in value]
    return value


def _digest(path: Path) -> str:
    data = path.read_bytes()
    if path.name in ("summary.json", "plan.json"):
        # blanked values, written back in the run's own layout (sorted keys as written? keep the file's order)
        data = json.dumps(_blank(json.loads(data)), indent=1).encode()
    elif path.name == "report.html":
        data = _VOLATILE_HTML.sub(r"\1\2", data.decode()).encode()
        data = re.sub(rb"[0-9.,]+ images, [0-9.,]+ bytes, [0-9.,]+ s", b"<scan>", data)
    return hashlib.sha256(data).hexdigest()


def _outputs(run: Path) -> dict[str, str]:
    skip = {"prep.log", ".prep-lock"}  # the log has times in every line; the lock holds only the folder's mark
    return {
        str(p.relative_to(run)): _digest(p)
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name not in skip and ".hydra" not in p.parts
    }


def _input_digests(root: Path, paths: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for key in sorted(paths):
        p = root / paths[key]
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file():
                h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("reference")
    paths = _inputs(root, photos)
    return root, paths, _input_digests(root, paths)


@pytest.mark.parametrize("case", ["demo", "imagenet_passthrough", "imagenet_stratified_tfds", "photos_grouped_webdataset",
                                  "photos_near_jpeg_arrayrecord", "imagenet_raw_ofrecord", "photos_dry_run"])
def test_reference_run_is_byte_identical_to_its_pin(reference, case):
    root, paths, inputs = reference
    out = root / case
    run_prep(*_cases(paths)[case], f"hydra.run.dir={case}", "progress=false", cwd=root)
    got = _outputs(out)
    assert "summary.json" in got or case.endswith("dry_run")
    assert "plan.json" in got, got
    pins = json.loads(PINS.read_text()) if PINS.exists() else {"inputs": {}, "runs": {}}
    if os.environ.get("PREP_REPIN"):
        pins["inputs"] = inputs
        pins["runs"][case] = got
        PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
        return
    if os.environ.get("PREP_REF_DEBUG"):
        print(json.dumps(got, indent=1))
    if pins.get("inputs") != inputs:
        pytest.skip("the test pictures encode to other bytes with this OpenCV/Pillow build: the pins are for the build they were taken with")
    assert got == pins["runs"][case]
