"""`make bench`: prep's speed and memory against the copy floor and the seed scripts' methods.

Generates a deterministic ImageNet-like set (photo-like JPEGs cut from scikit-learn's sample photos, no
download), then times whole processes, start-up included, side by side in one run (median of --repeat):

  1. copy floor: `cat` of every image into one file
  2. prep dataset=imagenet_val (pass-through)
  3. seed 002's TensorFlow method (seed002_tf.py), the peer baseline
  4. re-encoding to JPEG: prep (all cores) against seed 000's one-core OpenCV loop (seed000_opencv.py)
  5. peak memory (resident set size summed over the process and its workers) of each

and writes the table, the targets and the machine to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# ---------------------------------------------------------------- data

def _photos():
    from sklearn.datasets import load_sample_images

    return [image[..., ::-1].copy() for image in load_sample_images().images]  # BGR for OpenCV


def _make_image(args):
    """One photo-like JPEG: a crop of a sample photo at a varied size, position, flip and quality."""
    i, root = args
    import cv2

    photos = _PHOTOS
    photo = photos[i % 2]
    height = 330 + (i * 37) % 97
    width = 440 + (i * 53) % 200
    top, left = (i * 71) % (photo.shape[0] - height + 1), (i * 113) % (photo.shape[1] - width + 1)
    image = photo[top : top + height, left : left + width]
    if i % 3 == 0:
        image = image[:, ::-1]
    if i % 5 == 0:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90 + i % 8])
    (root / f"ILSVRC2012_val_{i + 1:08d}.JPEG").write_bytes(data.tobytes())


_PHOTOS = None


def _init():
    global _PHOTOS
    _PHOTOS = _photos()


def make_dataset(data_dir: Path, count: int) -> tuple[Path, Path, int]:
    """(image folder, val.txt, total bytes); made once per size and kept under benchmarks/data/."""
    folder = data_dir / f"imagenet_like_v2_{count}"
    images, labels = folder / "val_images", folder / "val.txt"
    if not labels.exists():
        shutil.rmtree(folder, ignore_errors=True)
        images.mkdir(parents=True)
        started = time.time()
        with Pool(os.cpu_count(), initializer=_init) as pool:
            pool.map(_make_image, [(i, images) for i in range(count)], chunksize=64)
        labels.write_text("".join(f"ILSVRC2012_val_{i + 1:08d}.JPEG {(i * 7919) % 1000}\n" for i in range(count)))
        print(f"generated {count} JPEGs in {time.time() - started:.0f} s", flush=True)
    total = sum(p.stat().st_size for p in images.iterdir())
    return images, labels, total


# ---------------------------------------------------------------- measuring

def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids


_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _rss_kb(pid: int) -> int:
    # statm, not smaps_rollup: reading smaps walks the page tables under the process's memory lock and
    # slowed the measured runs by 10-20%. RSS counts pages shared by forked workers once per process, so
    # the sum over the tree overstates memory: an upper bound.
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


@dataclass
class Run:
    seconds: float
    peak_mb: float
    cpu: float = 0.0  # user + system seconds of the process and everything it waited for


def sampled_run(command: list[str], sample, stdout=None) -> tuple[float, float, bytes]:
    """Run a whole process, calling sample(pid, seconds_since_start) every 50 ms while it runs; returns its wall
    seconds, its CPU seconds (user + system of the process and everything it waited for) and its stderr. A failed
    command stops the benchmark, with the end of its stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = threading.Event()

    def sampling():
        while not done.is_set():
            sample(proc.pid, time.perf_counter() - started)
            time.sleep(0.05)

    sampler = threading.Thread(target=sampling, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed ({proc.returncode}):\n{stderr.decode()[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), stderr


def run_once(command: list[str], cleanup: Path | None = None, stdout=None) -> Run:
    """Wall and CPU time of a whole process and the peak of the summed RSS of its process tree (sampled every 50 ms)."""
    if cleanup is not None:
        shutil.rmtree(cleanup, ignore_errors=True)
    peak = 0

    def sample(pid: int, seconds: float) -> None:
        nonlocal peak
        peak = max(peak, sum(_rss_kb(p) for p in _tree(pid)))

    seconds, cpu, _ = sampled_run(command, sample, stdout)
    if cleanup is not None:
        shutil.rmtree(cleanup, ignore_errors=True)
    return Run(seconds, peak / 1024, cpu)


@dataclass
class Result:
    name: str
    images: int
    runs: list[Run] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def peak_mb(self) -> float:
        return max(r.peak_mb for r in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(r.cpu for r in self.runs)

    def show(self) -> None:
        print(f"  {self.name}: {self.seconds:.2f} s, {self.cpu:.2f} CPU-s (median of {len(self.runs)}), peak {self.peak_mb:.0f} MB", flush=True)


def measure(name: str, images: int, command: list[str], repeat: int, cleanup: Path | None = None, stdout=None) -> Result:
    result = Result(name, images)
    for _ in range(repeat):
        result.runs.append(run_once(command, cleanup, stdout))
    result.show()
    return result


def alternate(methods: list[tuple[str, str, int, list[str], Path | None]], repeat: int) -> dict[str, Result]:
    """Several methods run in turn, round after round, so that each sees the same machine: (key, name, images,
    command, cleanup) each."""
    results = {key: Result(name, images) for key, name, images, _, _ in methods}
    for _ in range(repeat):
        for key, _, _, command, cleanup in methods:
            results[key].runs.append(run_once(command, cleanup))
    for result in results.values():
        result.show()
    return results


# ---------------------------------------------------------------- report

def machine() -> str:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return f"{os.cpu_count()} cores ({cpu or platform.processor()}), {mem_kb / 1024 / 1024:.0f} GB RAM, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def report(results: dict[str, Result], total_bytes: int, count: int, small: int | None) -> str:
    floor = results["copy"]
    rows = [
        "| method | images | seconds | images/s | MB/s | vs copy floor | CPU seconds | CPU vs copy floor | peak memory |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, result in results.items():
        mb = total_bytes * result.images / count / 1e6
        rows.append(
            f"| {result.name} | {result.images:,} | {result.seconds:.2f} | {result.images / result.seconds:,.0f} | "
            f"{mb / result.seconds:,.0f} | {result.seconds / floor.seconds:.2f}x | {result.cpu:.2f} | {result.cpu / floor.cpu:.2f}x | {result.peak_mb:,.0f} MB |"
        )
    prep, peer = results["prep"], results.get("seed002")
    reencode, seed000 = results.get("prep_jpeg"), results.get("seed000")
    targets = [
        ("pass-through wall <= 1.3x the copy floor (in alternation)", f"{prep.seconds / floor.seconds:.2f}x", prep.seconds / floor.seconds <= 1.3),
        ("pass-through CPU time <= 2x the copy floor's", f"{prep.cpu / floor.cpu:.2f}x", prep.cpu / floor.cpu <= 2.0),
    ]
    if peer:
        targets.append(("pass-through >= 3x faster than seed 002's TensorFlow method", f"{peer.seconds / prep.seconds:.1f}x", peer.seconds / prep.seconds >= 3))
    if reencode and seed000:
        ratio = seed000.seconds / reencode.seconds
        targets.append(("re-encode to JPEG >= 1.8x the images/s of seed 000's one-core loop", f"{ratio:.2f}x", ratio >= 1.8))
        if "ceiling" in results:
            ceiling = seed000.seconds / results["ceiling"].seconds
            targets.append(("(what 2 cores give: the seed loop twice side by side vs once)", f"{ceiling:.2f}x", ceiling >= 1.8))
    targets.append(("peak memory of pass-through < 400 MB", f"{prep.peak_mb:.0f} MB", prep.peak_mb < 400))
    if small and "prep_small" in results:
        grow = prep.peak_mb / results["prep_small"].peak_mb
        targets.append((f"memory does not grow with images ({small:,} vs {count:,})", f"{results['prep_small'].peak_mb:.0f} MB vs {prep.peak_mb:.0f} MB", grow < 1.25))
    lines = ["| target | measured | met |", "|---|---:|:---:|"] + [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in targets]
    return "\n".join(rows) + "\n\n" + "\n".join(lines)


def checksum_costs(images: Path) -> dict[str, float]:
    """CPU seconds, in this process, of what every pass-through run must do to the same bytes beyond copying
    them: the sha256 of the shards (summary.json) and the CRC32C of every record (the TFRecord framing)."""
    import hashlib

    import google_crc32c

    datas = [p.read_bytes() for p in sorted(images.iterdir())]
    out = {}
    for name, fn in (("sha256", lambda d, h=hashlib.sha256(): h.update(d)), ("crc32c", google_crc32c.value)):
        started = time.process_time()
        for data in datas:
            fn(data)
        out[name] = time.process_time() - started
    return out


NOTES = """Reading the numbers:

- The copy floor is `cat`, which copies in the kernel (copy_file_range) and so spends almost no CPU;
  prep reads every image into the process to check its header, frames it with a CRC32C and checksums
  every shard with sha256, so it cannot reach 1.0x, and its CPU time is bounded by the two checksums
  (measured below the table). The copy floor and prep's pass-through alternate, round after round.
- Re-encoding is CPU-bound (decode + encode is about 2 ms per image here). "Two seed 000 loops side
  by side" is what two cores give at all on this machine; prep's ratio over the one-core loop is bounded
  by it, less prep's start-up (about 0.3 s) and the sha256 of every shard. Run-to-run noise is several
  percent either way.
- Peak memory is summed RSS, counting pages that forked workers share once per process: an upper bound.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000, help="images in the generated set (default 20,000, about 1.4 GB)")
    parser.add_argument("--small", type=int, default=5_000, help="a smaller run, to show memory does not grow (0: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each method; the median time is reported")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="where the generated set is kept")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    parser.add_argument("--skip-tf", action="store_true", help="leave out seed 002's TensorFlow method")
    parser.add_argument("--skip-extra", action="store_true", help="leave out the start-up and resize sections")
    args = parser.parse_args(argv)

    args.data.mkdir(parents=True, exist_ok=True)
    images, labels, total = make_dataset(args.data, args.images)
    work = args.data / "out"
    py = sys.executable
    print(f"{args.images:,} images, {total / 1e6:,.0f} MB in {images}; {machine()}", flush=True)
    names = [line.split()[0] for line in labels.read_text().splitlines()]
    floor_target = work / "all.bin"
    work.mkdir(parents=True, exist_ok=True)
    with open(os.devnull, "wb"):
        pass
    # Warm the page cache so every method reads from memory, as the copy floor does.
    subprocess.run(["cat", *[str(images / n) for n in names]], stdout=subprocess.DEVNULL, check=True)

    copy_cmd = ["sh", "-c", f'cd "{images}" && cat * > "{floor_target}"']
    prep_cmd = [py, "-m", "prep", "dataset=imagenet_val", f"source.image_dir={images}", f"labels.path={labels}", "progress=false"]
    # The copy floor and prep's pass-through alternate, round after round: the ratio is between neighbours.
    results: dict[str, Result] = alternate([
        ("copy", "copy floor: cat every image into one file", args.images, copy_cmd, None),
        ("prep", "prep dataset=imagenet_val (pass-through)", args.images, prep_cmd + [f"hydra.run.dir={work / 'prep'}"], work / "prep"),
    ], args.repeat)
    if args.small and args.small < args.images:
        results["prep_small"] = measure(
            f"prep pass-through, first {args.small:,} images", args.small,
            # shard_size keeps the number of shards (so of worker processes) equal to the full run's
            prep_cmd + [f"limit={args.small}", f"writer.shard_size={max(1, 5000 * args.small // args.images)}", f"hydra.run.dir={work / 'prep_small'}"],
            args.repeat, work / "prep_small",
        )
    if not args.skip_tf:
        seed002 = [py, str(HERE / "seed002_tf.py"), "--image_dir", str(images), "--label_file", str(labels), "--tfrec_dir", str(work / "seed002")]
        results["seed002"] = measure("seed 002 method: TensorFlow read_file + extract_jpeg_shape + TFRecordWriter", args.images, seed002, args.repeat, work / "seed002")
    reencode = [py, "-m", "prep", "dataset=images", f"source.image_dir={images}", f"labels.path={labels}", "encoder=jpeg",
                "writer=ofrecord", "features=oneflow", "writer.num_shards=5", "progress=false", f"hydra.run.dir={work / 'prep_jpeg'}"]
    results["prep_jpeg"] = measure("prep re-encode to JPEG, OFRecord (all cores)", args.images, reencode, args.repeat, work / "prep_jpeg")
    seed000 = [py, str(HERE / "seed000_opencv.py"), "--image_root", str(images), "--label_file", str(labels), "--save_dir", str(work / "seed000")]
    results["seed000"] = measure("seed 000 method: OpenCV imread + imencode loop, one core", args.images, seed000, args.repeat, work / "seed000")
    # What two cores can give at all: the seed's loop twice side by side, each on half the images.
    halves = []
    for k, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        half = args.data / f"half{k}.txt"
        half.write_text("".join(f"{n} 0\n" for n in part))
        halves.append(f'"{py}" "{HERE / "seed000_opencv.py"}" --image_root "{images}" --label_file "{half}" --save_dir "{work / "ceiling" / str(k)}"')
    results["ceiling"] = measure("two seed 000 loops side by side, half the images each", args.images, ["sh", "-c", " & ".join(halves) + "; wait"], args.repeat, work / "ceiling")
    shutil.rmtree(work, ignore_errors=True)

    table = report(results, total, args.images, args.small)
    costs = checksum_costs(images)
    table += (
        f"\n\nWhat bounds prep's CPU time on these bytes (measured in one process on the same files): the sha256 of "
        f"the shards, which summary.json records, takes {costs['sha256']:.2f} CPU-s, and the CRC32C of every record, "
        f"which TFRecord's framing needs, {costs['crc32c']:.2f} CPU-s: {costs['sha256'] + costs['crc32c']:.2f} CPU-s, "
        f"{(costs['sha256'] + costs['crc32c']) / results['copy'].cpu:.1f}x the copy floor's whole CPU time, before a "
        "byte is read or written."
    )
    text = (
        "# Benchmark results\n\n"
        f"Written by `make bench` (`python benchmarks/bench.py --images {args.images} --repeat {args.repeat}`) on "
        f"{time.strftime('%Y-%m-%d')}.\n\nMachine: {machine()}.\n\n"
        f"Data: {args.images:,} ImageNet-like JPEGs cut from scikit-learn's sample photos, {total / 1e6:,.0f} MB, "
        "warm page cache. Times are whole processes including interpreter start-up and imports, median of "
        f"{args.repeat} runs; peak memory is the resident set size summed over the process and its workers "
        "(sampled every 50 ms; pages shared by forked workers are counted in each, so it is an upper bound).\n\n"
        + table + "\n\n" + NOTES
    )
    sections = []
    if not args.skip_extra:
        sys.path.insert(0, str(HERE))
        import bench_resize
        import bench_startup

        print("start-up ...", flush=True)
        sections.append(bench_startup.report(10))
        print("resize ...", flush=True)
        sections.append(bench_resize.report(args.data))
    # The scale section is `make bench-scale`'s (it takes longer): kept as it was measured.
    old = args.out.read_text() if args.out.exists() else ""
    scale = old[old.find("## Scale:") :] if "## Scale:" in old else ""
    scale = scale[: scale.find("\n## ", 1) + 1] if "\n## " in scale[1:] else scale
    text = text.rstrip("\n") + "\n\n" + "\n\n".join(s.strip("\n") for s in sections + ([scale] if scale else [])) + "\n"
    args.out.write_text(text)
    print("\n" + table + f"\n\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
