"""Every command in README.md, pasted into bash as a user would, in a folder that has the README's file names."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import readme
from conftest import crop, jpeg_bytes, make_class_folders, png_bytes

pytestmark = pytest.mark.slow

# Lines not run here, and why. Every rule must match a line of the README, so no rule outlives its command.
NOT_RUN = {
    "make ": "the Makefile's targets run this test (make test) or take minutes (make bench)",
    "pip install ": "tests/test_packaging.py installs prep into a fresh virtualenv and runs it there",
    "cd my-experiments": "every command runs in one folder that holds the README's files",
    "executor.address=": "needs a running Ray cluster (the local-instance line runs; tests/test_cluster.py has more)",
    "s3://": "needs object storage (tests/test_cluster.py runs against a moto S3 server)",
    "ray start ": "starts a cluster node (tests/test_ray_cluster.py starts a 2-node cluster and stops it)",
}
# What the README writes for "your command", and a folder outside the test's reach.
PLACEHOLDERS = {"prep ... ": "prep dataset=images source.image_dir=DIR labels=subdirs ", "output_dir=/data/records": "output_dir=data/records"}
# A run folder as the README shows it (outputs/cifar10/2026-11-21_10-00-00_4242/...): the newest real one is used.
RUN_DIR = re.compile(r"(outputs/(?:[\w-]+/)+?)(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+)([^\s\"']*)")
RERUN = re.compile(r"--config-path (\S+)/\.hydra .*hydra\.run\.dir=(\S+)")


def mixed_bytes(photos, i: int) -> bytes:
    """Real data is mixed, so the README's examples are run on mixed data: a grayscale image every fourth, a
    JPEG under a .png name every fifth (ImageNet has a PNG named .JPEG), sizes that differ throughout."""
    rgb = crop(photos, i)
    if i % 4 == 1:
        return png_bytes(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    if i % 5 == 2:
        return jpeg_bytes(rgb)
    return png_bytes(rgb)


def mix(folder: Path, names: list[str], photos) -> None:
    for i, name in enumerate(names):
        (folder / name).write_bytes(mixed_bytes(photos, i))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, photos) -> Path:
    """The folder the README's commands run in, with every input they name."""
    root = tmp_path_factory.mktemp("readme")
    # DIR/<class>/<image>.png serves every label format: labels=subdirs reads the folders, the files name the images.
    names = make_class_folders(root / "DIR", photos, ext=".png")
    mix(root / "DIR", names, photos)
    classes = sorted({name.split("/")[0] for name in names})
    label_of = {name: classes.index(name.split("/")[0]) for name in names}
    (root / "val.txt").write_text("".join(f"{name} {label_of[name]}\n" for name in names))
    (root / "label.txt").write_text("".join(json.dumps({name: label_of[name]}) + "\n" for name in names))
    (root / "trainLabels.csv").write_text("id,label\n" + "".join(f"{name[:-4]},{name.split('/')[0]}\n" for name in names))
    shutil.copytree(root / "DIR", root / "val_images")

    # Photos of 8 patients (p<n>_<k>.png) with a CSV naming label, patient and a given split; a pre-split folder
    # whose validation lacks one class.
    rows = ["filename,label,patient,split"]
    for i in range(32):
        name = f"p{i % 8}_{i:03d}.png"
        (root / "patients").mkdir(exist_ok=True)
        (root / "patients" / name).write_bytes(png_bytes(crop(photos, 200 + i)))
        rows.append(f"{name},{classes[i % 2]},p{i % 8},{'val' if i % 8 == 0 else 'train'}")
    (root / "patients.csv").write_text("\n".join(rows) + "\n")
    make_class_folders(root / "presplit" / "train", photos, ext=".png")
    make_class_folders(root / "presplit" / "val", photos, classes=classes[:2], per_class=3, ext=".png")

    (root / "cifar10" / "train").mkdir(parents=True)  # Kaggle's layout: train/<id>.png, trainLabels.csv with class names
    rows = ["id,label"]
    for i in range(30):
        (root / "cifar10" / "train" / f"{i + 1}.png").write_bytes(mixed_bytes(photos, i))
        rows.append(f"{i + 1},{classes[i % len(classes)]}")
    (root / "cifar10" / "trainLabels.csv").write_text("\n".join(rows) + "\n")

    (root / "images" / "train_set").mkdir(parents=True)  # OneFlow's layout: <n>_<label>.png and JSON lines
    (root / "images" / "train_label").mkdir(parents=True)
    lines = []
    for i in range(10):
        name = f"{i:08d}_{i % 3}.png"
        (root / "images" / "train_set" / name).write_bytes(png_bytes(crop(photos, i)))
        lines.append(json.dumps({name: i % 3}))
    (root / "images" / "train_label" / "label.txt").write_text("\n".join(lines) + "\n")

    from sklearn.datasets import load_digits  # mnist_train_small.csv: label and 28x28 pixels per row, no header

    digits = load_digits()
    (root / "sample_data").mkdir()
    rows = []
    for image, label in zip(digits.images[:20], digits.target[:20]):
        pixels = cv2.resize(np.rint(image * 255 / 16).astype(np.uint8), (28, 28), interpolation=cv2.INTER_NEAREST)
        rows.append(",".join(str(v) for v in [label, *pixels.ravel()]))
    (root / "sample_data" / "mnist_train_small.csv").write_text("\n".join(rows) + "\n")

    for path, text in readme.config_files().items():  # "Your own presets": the user's files and photos
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    make_class_folders(root / "data" / "flowers", photos)
    return root


def newest_run_dirs(text: str, cwd: Path) -> str:
    """The README's example run folders replaced by the newest real run folder that has the path named."""

    def newest(match: re.Match) -> str:
        prefix, _, rest = match.groups()
        runs = [p for p in (cwd / prefix).glob("*_*_*") if re.fullmatch(r"[\d_-]+", p.name)]
        for run in sorted(runs, key=lambda p: p.stat().st_mtime_ns, reverse=True):
            if (run.parent / (run.name + rest)).exists():
                return prefix + run.name + rest
        raise AssertionError(f"no run folder in {cwd / prefix} holds {rest!r}, for: {text}")

    return RUN_DIR.sub(newest, text)


def summaries(cwd: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in cwd.rglob("summary.json")}


def run_interrupted(text: str, cwd: Path, env: dict) -> None:
    """The README shows this command stopped with Ctrl-C: it is sent SIGINT while it starts, so the resume
    command that follows is checked as pasted (tests/test_bad_input.py resumes half-written runs)."""
    before = summaries(cwd)
    proc = subprocess.Popen(["bash", "-c", text], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode in (130, -signal.SIGINT), f"{text}\n{stderr.decode()}"
    assert summaries(cwd) == before, f"Ctrl-C did not stop: {text}\n{stderr.decode()}"


def shard_hashes(run_dir: Path) -> list[str]:
    return [s["sha256"] for s in json.loads((run_dir / "summary.json").read_text())["shards"]]


def test_every_readme_command_works_when_pasted(workdir, commands_on_path):
    env = commands_on_path
    unused = set(NOT_RUN)
    ran = []
    for block in readme.blocks():
        if block.lang == "python":
            proc = subprocess.run([sys.executable, "-c", newest_run_dirs(block.text, workdir)], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, f"README.md:{block.line}: python block failed\n{proc.stdout}\n{proc.stderr}"
            ran.append(f"python block at line {block.line}")
            continue
        if block.lang != "bash":
            continue
        for command in readme.commands(block):
            rule = next((rule for rule in NOT_RUN if rule in command.text), None)
            if rule:
                unused.discard(rule)
                continue
            text = command.text
            for placeholder, value in PLACEHOLDERS.items():
                text = text.replace(placeholder, value)
            text = newest_run_dirs(text, workdir)
            if command.interrupted:
                run_interrupted(text, workdir, env)
                continue
            before = summaries(workdir)
            proc = subprocess.run(["bash", "-c", text], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
            where = f"README.md:{command.line}: {command.text}\n(ran: {text})\n{proc.stdout}\n{proc.stderr}"
            assert proc.returncode == 0, where
            assert "Traceback" not in proc.stdout + proc.stderr, where
            if re.match(r"prep( |$)", text) and not re.search(r"--help|--cfg|dry_run=true", text):
                assert summaries(workdir) != before, f"no summary.json written by {where}"
            if "--config-dir" in text and "--help" in text:
                assert re.search(r"^dataset: .*\bflowers\b", proc.stdout, re.M) and re.search(r"^writer: .*\bmy_tfrecord\b", proc.stdout, re.M), where
            if rerun := RERUN.search(text):  # "the same shards": the rerun's bytes equal its source's
                assert shard_hashes(workdir / rerun.group(2)) == shard_hashes(workdir / rerun.group(1)), where
            ran.append(text)
    assert not unused, f"NOT_RUN rules that match no README line (remove them): {unused}"
    # The commands this issue was about ran: the quoted pattern, the user's preset, its rerun and its sweep.
    assert list(workdir.glob("outputs/mnist_ofrecord/*/train/part-00000"))
    assert any(text.startswith("prep --config-dir conf dataset=flowers") for text in ran)
    assert (workdir / "outputs" / "flowers_rerun" / "summary.json").exists()
    assert list(workdir.glob("outputs/flowers/multirun/*/sweep_summary.csv"))
