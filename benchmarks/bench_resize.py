"""encoder.resize with and without encoder.reduce=dct: images per CPU-second on one core, and what it costs in pixels.

Generates two deterministic sets from scikit-learn's sample photos (no download), kept under benchmarks/data/:
ImageNet-like photos (about 500x375) and 12-megapixel photos (4000x3000, some portrait), then runs prep's own
encoder (ImageEncoder.encode, what every shard task calls on each image) over the in-memory file bytes with
reduce=none (decode whole, then INTER_AREA: prep before DCT reduction) and reduce=dct, alternating rounds, and
reports images per CPU-second (time.process_time, one process, OpenCV on one thread) and the mean absolute pixel
difference between the two resized images (before the JPEG encode, so only the reduction's own effect counts).

    python benchmarks/bench_resize.py            # prints the markdown table
    from benchmarks.bench_resize import report   # report() -> str, the same table for benchmarks/results.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's prep when run as a script

DATA = HERE / "data"
IMAGENET_COUNT = 200
PHOTO_12MP_COUNT = 24
TARGETS = {"imagenet-like -> 128": 1.4, "12 MP -> 256": 4.0, "imagenet-like -> 256": 1.0}  # minimum dct/none ratio


# ---------------------------------------------------------------- data


def _photos():
    from sklearn.datasets import load_sample_images

    return [image[..., ::-1].copy() for image in load_sample_images().images]  # BGR, 427x640


def _imagenet_like(photos, i: int):
    """About 500x375 (ImageNet's typical size): a crop of a sample photo, scaled, sometimes flipped or portrait."""
    import cv2

    photo = photos[i % 2]
    width, height = [(500, 375), (500, 333), (375, 500), (500, 400), (480, 360), (333, 500)][i % 6]
    crop_h, crop_w = 300 + (i * 37) % 127, 400 + (i * 53) % 240
    if height > width:
        crop_h, crop_w = min(427, crop_w), min(640, crop_h)
    top, left = (i * 71) % (photo.shape[0] - crop_h + 1), (i * 113) % (photo.shape[1] - crop_w + 1)
    image = cv2.resize(photo[top : top + crop_h, left : left + crop_w], (width, height), interpolation=cv2.INTER_AREA)
    return image[:, ::-1] if i % 3 == 0 else image


def _twelve_megapixel(photos, i: int):
    """4000x3000 (every fourth 3000x4000): a sample photo scaled up, with some of the fine grain of a phone's
    sensor (none to heavy, by i), so the JPEGs hold detail everywhere: 1.4 to 3.4 MB, as phones' 12 MP JPEGs are.
    (An upscaled photo alone is smooth, and cheaper to decode than a real one: entropy decoding grows with bytes.)"""
    import cv2
    import numpy as np

    photo = photos[i % 2]
    crop_h, crop_w = 300 + (i * 29) % 120, 400 + (i * 41) % 230
    top, left = (i * 71) % (photo.shape[0] - crop_h + 1), (i * 113) % (photo.shape[1] - crop_w + 1)
    size = (3000, 4000) if i % 4 == 3 else (4000, 3000)
    image = cv2.resize(photo[top : top + crop_h, left : left + crop_w], size, interpolation=cv2.INTER_CUBIC)
    if i % 5 == 0:
        return image
    grain = np.random.default_rng(i).normal(0, i % 5, image.shape[:2])[..., None]
    return np.clip(image + grain, 0, 255).astype(np.uint8)


def make_set(kind: str, count: int, data_dir: Path = DATA) -> list[Path]:
    """The JPEGs of one set; made once and kept (benchmarks/data/ is not committed)."""
    import cv2

    folder = data_dir / f"resize_{kind}_v2_{count}"
    paths = [folder / f"{i:05d}.jpg" for i in range(count)]
    if not all(p.exists() for p in paths):
        folder.mkdir(parents=True, exist_ok=True)
        photos = _photos()
        make = {"imagenet_like": _imagenet_like, "12mp": _twelve_megapixel}[kind]
        started = time.time()
        for i, path in enumerate(paths):
            ok, data = cv2.imencode(".jpg", make(photos, i), [cv2.IMWRITE_JPEG_QUALITY, 90 + i % 6])
            assert ok
            path.with_suffix(".tmp").write_bytes(data.tobytes())
            path.with_suffix(".tmp").rename(path)
        print(f"generated {count} {kind} JPEGs in {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    return paths


# ---------------------------------------------------------------- measuring


@dataclass
class Row:
    case: str
    images: int
    megabytes: float
    none_rate: float  # images per CPU-second, reduce=none
    dct_rate: float  # images per CPU-second, reduce=dct
    decoded_at: dict[str, int]  # reduce=dct: images per decode scale
    mean_difference: float  # mean absolute pixel difference, dct vs none, over all images
    max_difference: float  # the largest per-image mean
    deterministic: bool  # dct gave the same bytes in every round

    @property
    def speedup(self) -> float:
        return self.dct_rate / self.none_rate


def _cpu_seconds(encoder, payloads: list[bytes]) -> tuple[float, list[bytes]]:
    started = time.process_time()
    out = [encoder.encode(payload).data for payload in payloads]
    return time.process_time() - started, out


def measure(case: str, paths: list[Path], size: int, rounds: int) -> Row:
    """Both modes over the same in-memory bytes, alternating rounds (so drift hits both); median per-round rate."""
    import numpy as np

    from prep.encoders.image import ImageEncoder

    payloads = [p.read_bytes() for p in paths]
    encoders = {mode: ImageEncoder("jpeg", quality=95, resize=size, reduce=mode) for mode in ("none", "dct")}
    rates: dict[str, list[float]] = {"none": [], "dct": []}
    outputs: list[list[bytes]] = []
    for _ in range(rounds):
        for mode, encoder in encoders.items():
            seconds, out = _cpu_seconds(encoder, payloads)
            rates[mode].append(len(payloads) / seconds)
            if mode == "dct":
                outputs.append(out)
    decoded_at = {f"1/{d}": 0 for d in (1, 2, 4, 8)}
    differences = []
    for payload in payloads:
        reduced, _, _, denominator = encoders["dct"].pixels(payload)
        full = encoders["none"].pixels(payload)[0]
        decoded_at[f"1/{denominator}"] += 1
        differences.append(float(np.abs(reduced.astype(np.int16) - full.astype(np.int16)).mean()))
    return Row(
        case, len(payloads), sum(map(len, payloads)) / 1e6, statistics.median(rates["none"]), statistics.median(rates["dct"]),
        decoded_at, statistics.fmean(differences), max(differences), all(out == outputs[0] for out in outputs),
    )  # fmt: skip


def run(data_dir: Path = DATA, rounds: int = 5, imagenet_count: int = IMAGENET_COUNT, photo_count: int = PHOTO_12MP_COUNT) -> list[Row]:
    """The three cases. One core: OpenCV's own thread pool is turned off, so CPU-seconds are one core's work."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        imagenet = make_set("imagenet_like", imagenet_count, data_dir)
        photos = make_set("12mp", photo_count, data_dir)
        return [
            measure("imagenet-like -> 128", imagenet, 128, rounds),
            measure("12 MP -> 256", photos, 256, max(2, rounds // 2)),
            measure("imagenet-like -> 256", imagenet, 256, rounds),
        ]
    finally:
        cv2.setNumThreads(threads)


def markdown(rows: list[Row]) -> str:
    lines = [
        "### Resize: DCT-domain reduction (`encoder.reduce=dct`) against decoding whole (`reduce=none`)",
        "",
        "`python benchmarks/bench_resize.py`: prep's `ImageEncoder.encode` (encoder=jpeg quality 95, encoder.resize "
        "as below) over file bytes already in memory, one process, OpenCV on one thread; images per CPU-second "
        "(`time.process_time`), median of alternating rounds. Pixel difference: mean absolute difference (0-255) "
        "between the two modes' resized pixels, before the JPEG encode.",
        "",
        "| case | images | MB | reduce=none img/CPU-s | reduce=dct img/CPU-s | speed-up | target | met | decoded at (1/1, 1/2, 1/4, 1/8) | mean pixel diff (max) | dct bytes same every round |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|---|---:|:---:|",
    ]
    for row in rows:
        target = TARGETS[row.case]
        met = row.speedup >= target if target > 1 else row.speedup >= 0.95  # "no slower": within timing noise
        scales = ", ".join(str(row.decoded_at[f"1/{d}"]) for d in (1, 2, 4, 8))
        lines.append(
            f"| {row.case} | {row.images} | {row.megabytes:.1f} | {row.none_rate:,.0f} | {row.dct_rate:,.0f} | {row.speedup:.2f}x | "
            f"{'>= ' + format(target, '.1f') + 'x' if target > 1 else 'no slower'} | {'yes' if met else '**no**'} | {scales} | "
            f"{row.mean_difference:.2f} ({row.max_difference:.2f}) | {'yes' if row.deterministic else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def report(data_dir: Path = DATA, rounds: int = 5) -> str:
    """Generate the sets if needed, measure, and return the markdown section for benchmarks/results.md."""
    return markdown(run(data_dir, rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DATA, help="where the generated sets are kept (default benchmarks/data)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per mode (12 MP: half as many, at least 2)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    text = report(args.data_dir, args.rounds)
    print(text)
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
