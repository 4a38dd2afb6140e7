"""Test data made from the real pictures that ship with scikit-learn (sample photos, digits); nothing downloaded."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def photos() -> list[np.ndarray]:
    """scikit-learn's two sample photos (china.jpg, flower.jpg), RGB uint8, 427x640."""
    from sklearn.datasets import load_sample_images

    return [np.ascontiguousarray(image) for image in load_sample_images().images]


def crop(photos: list[np.ndarray], i: int, size: int | None = None) -> np.ndarray:
    """A deterministic, varied RGB crop: photo, position and size all depend on i."""
    photo = photos[i % len(photos)]
    height = size or 48 + (i * 37) % 80
    width = size or 56 + (i * 53) % 90
    top = (i * 71) % (photo.shape[0] - height)
    left = (i * 113) % (photo.shape[1] - width)
    return np.ascontiguousarray(photo[top : top + height, left : left + width])


def jpeg_bytes(rgb: np.ndarray, quality: int = 90, progressive: bool = False) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    pixels = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", pixels, params)
    assert ok
    return buf.tobytes()


def png_bytes(rgb: np.ndarray) -> bytes:
    pixels = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", pixels)
    assert ok
    return buf.tobytes()


def cmyk_jpeg_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(out, format="JPEG", quality=90)
    return out.getvalue()


@dataclass
class ImageFolder:
    root: Path
    labels: Path  # val.txt: "name label" per line, in this order
    names: list[str]
    label_ids: list[int]

    def bytes_of(self, name: str) -> bytes:
        return (self.root / name).read_bytes()


def make_imagenet_folder(path: Path, photos: list[np.ndarray], count: int = 24, classes: int = 5) -> ImageFolder:
    """ImageNet-val-like: ILSVRC2012_val_<n>.JPEG files and a caffe val.txt.

    Like the real set it holds a PNG named .JPEG (#2), a grayscale JPEG (#3), a progressive JPEG (#4)
    and a CMYK JPEG (#5); labels are integers; the val.txt order is not the sorted order.
    """
    root = path / "val_images"
    root.mkdir(parents=True)
    names, labels = [], []
    for i in range(1, count + 1):
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        rgb = crop(photos, i)
        if i == 2:
            data = png_bytes(rgb)
        elif i == 3:
            data = jpeg_bytes(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        elif i == 4:
            data = jpeg_bytes(rgb, progressive=True)
        elif i == 5:
            data = cmyk_jpeg_bytes(rgb)
        else:
            data = jpeg_bytes(rgb)
        (root / name).write_bytes(data)
        names.append(name)
        labels.append((i * 7) % classes)
    order = sorted(range(count), key=lambda k: (k * 5) % count)  # a fixed shuffle
    names = [names[k] for k in order]
    labels = [labels[k] for k in order]
    label_file = path / "val.txt"
    label_file.write_text("".join(f"{n} {l}\n" for n, l in zip(names, labels)))
    return ImageFolder(root, label_file, names, labels)


@pytest.fixture
def imagenet_folder(tmp_path, photos) -> ImageFolder:
    return make_imagenet_folder(tmp_path, photos)


def make_class_folders(root: Path, photos: list[np.ndarray], classes=("daisy", "rose", "tulip"), per_class: int = 10, ext: str = ".jpg") -> list[str]:
    """root/<class>/<nnn><ext>, as `labels=subdirs` reads them; returns the names relative to root, sorted."""
    encode = png_bytes if ext == ".png" else jpeg_bytes
    names = []
    for i in range(len(classes) * per_class):
        name = f"{classes[i % len(classes)]}/{i:03d}{ext}"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(encode(crop(photos, i)))
        names.append(name)
    return sorted(names)


def console_scripts() -> dict[str, str]:
    """pyproject.toml's [project.scripts]: command -> "module:function"."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


@pytest.fixture(scope="session")
def commands_on_path(tmp_path_factory) -> dict[str, str]:
    """An environment whose PATH has prep's commands, written as pip writes console scripts, running this checkout."""
    bin_dir = tmp_path_factory.mktemp("bin")
    for name, target in console_scripts().items():
        module, function = target.split(":")
        script = bin_dir / name
        script.write_text(f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n")
        script.chmod(0o755)
    path = os.pathsep.join(filter(None, [str(bin_dir), os.environ.get("PATH")]))
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}


def run_prep(*args: str, module: str | None = "prep", cwd: Path = REPO, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m prep ARGS` in a subprocess, as a user runs it (module=None: ARGS are the interpreter's)."""
    # This checkout's prep, whatever the interpreter has installed (its editable install may be another checkout's).
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, *(["-m", module] if module else []), *args]
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"prep exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tf():
    """TensorFlow, the real consumer of our TFRecords (a test dependency; prep itself never imports it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow
