"""Runs for the reader tests (RecordDataset, DALI, Ray): PNG class folders of varied crops, with one gray and
one RGBA image, converted in-process by the pipeline (no Hydra, no subprocess)."""

from __future__ import annotations

import cv2
import numpy as np
from conftest import crop, png_bytes
from test_pipeline import SLIM  # noqa: F401  (the slim keys, one definition for the tests)

from prep.encoders.passthrough import PassthroughEncoder
from prep.executors.local import LocalExecutor
from prep.labels.subdirs import SubdirLabels
from prep.pipeline import convert
from prep.sources.image_dir import ImageDirSource
from prep.split import StratifiedSplit

ONEFLOW = {"images": "encoded", "labels": "label:int32", "names": "filename"}


def make_folder(root, photos, count: int = 30, size: int | None = None) -> dict[str, np.ndarray]:
    """root/<class>/<n>.png: varied RGB crops, one gray and one RGBA image; returns name -> the pixels
    tf.io.decode_image would give (HxWxC, RGB(A), gray HxWx1)."""
    classes = ("daisy", "rose", "tulip")
    pixels = {}
    for i in range(count):
        name = f"{classes[i % 3]}/{i:03d}.png"
        rgb = crop(photos, i, size)
        if i == 4 and size is None:
            image = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None]
            data = png_bytes(image[:, :, 0])
        elif i == 7 and size is None:
            image = np.dstack([rgb, (np.arange(rgb.shape[0] * rgb.shape[1]) % 256).reshape(rgb.shape[:2]).astype(np.uint8)])
            data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA))[1].tobytes()
        else:
            image, data = rgb, png_bytes(rgb)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        pixels[name] = image
    return pixels


def make_run(out, images, writer, *, encoder=None, splitter=None) -> str:
    convert(
        name="flowers", source=ImageDirSource(str(images)), labels=SubdirLabels(), splitter=splitter or StratifiedSplit(0.2, 0.1, 0),
        encoder=encoder or PassthroughEncoder(), writer=writer, executor=LocalExecutor(1), output_dir=str(out), progress=False,
    )
    return str(out)
