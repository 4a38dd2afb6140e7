"""`make bench-scale`: prep on many small images (100,000 and 1,000,000 by default) against the copy floor.

Generates the sets (small JPEGs of about 1 KB from scikit-learn's sample photos, all in one folder, one
space-separated label file; about 30 s for a million) in memory, on /dev/shm, where they stay cached (a
million 1 KB files take 4 GB of page cache, which a machine that reclaims cold pages, as this one's DAMON
does, does not keep: the copy floor then measures the disk); --data DIR keeps them on disk instead. Then
it alternates side by side:

  1. the copy floor: `find DIR -type f -print0 | xargs -0 cat > one_file`
  2. prep dataset=imagenet_val (pass-through) on the same files

and reports wall time, CPU time, planning time (start until the first shard file appears), and peak memory
of the whole process tree: resident set size summed over the processes (an upper bound: pages shared by
forked workers count in each) and proportional set size (shared pages divided among the processes that
share them: what the tree really holds). Takes about 5 minutes at the defaults; appends its section to
benchmarks/results.md (or --out).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench import _rss_kb, _tree, machine, sampled_run  # noqa: E402
from scale_data import make_small  # noqa: E402


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class Run:
    seconds: float
    cpu: float
    rss_mb: float
    pss_mb: float
    first_shard: float | None  # seconds from start until a shard file appeared in the watched folder
    log_lines: int = 0  # lines the run wrote to stderr


def run_once(command: list[str], watch: Path | None = None) -> Run:
    """Wall and CPU time (user + system of the process and everything it waited for), summed peak RSS
    (sampled every 50 ms), summed peak PSS (every 500 ms), and when the first file appeared in `watch`."""
    rss = pss = tick = 0
    first: float | None = None

    def sample(pid: int, seconds: float) -> None:
        nonlocal rss, pss, first, tick
        pids = _tree(pid)
        rss = max(rss, sum(_rss_kb(p) for p in pids))
        if tick % 10 == 0:
            pss = max(pss, sum(_pss_kb(p) for p in pids))
        if watch is not None and first is None:
            try:
                if any(n.endswith((".partial", ".tfrecord")) for n in os.listdir(watch)):
                    first = seconds
            except OSError:
                pass
        tick += 1

    seconds, cpu, stderr = sampled_run(command, sample)
    return Run(seconds, cpu, rss / 1024, pss / 1024, first, len(stderr.splitlines()))


def measure_size(count: int, data: Path, repeat: int) -> dict:
    images, labels = make_small(data, count)
    total = sum(e.stat().st_size for e in os.scandir(images))
    work = data / "out_scale"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # Warm the page cache, as for every method.
    subprocess.run(["sh", "-c", f'find "{images}" -type f -print0 | xargs -0 cat > /dev/null'], check=True)
    copy = ["sh", "-c", f'find "{images}" -type f -print0 | xargs -0 cat > "{work / "one_file"}"']
    out = work / "prep"
    prep = [sys.executable, "-m", "prep", "dataset=imagenet_val", f"source.image_dir={images}", f"labels.path={labels}", "progress=false", f"hydra.run.dir={out}"]
    runs: dict[str, list[Run]] = {"copy": [], "prep": []}
    for _ in range(repeat):  # alternating, so both see the same machine
        runs["copy"].append(run_once(copy))
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        runs["prep"].append(run_once(prep, watch=out))
        shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    result = {"count": count, "bytes": total}
    for key, rs in runs.items():
        result[key] = {
            "seconds": statistics.median(r.seconds for r in rs),
            "cpu": statistics.median(r.cpu for r in rs),
            "rss_mb": max(r.rss_mb for r in rs),
            "pss_mb": max(r.pss_mb for r in rs),
            "first_shard": statistics.median(r.first_shard for r in rs) if all(r.first_shard is not None for r in rs) else None,
        }
    p, c = result["prep"], result["copy"]
    print(
        f"  {count:,} images: cat {c['seconds']:.1f} s ({c['cpu']:.1f} CPU-s); prep {p['seconds']:.1f} s ({p['cpu']:.1f} CPU-s), "
        f"{p['seconds'] / c['seconds']:.2f}x, first shard at {p['first_shard'] or float('nan'):.1f} s, "
        f"peak RSS {p['rss_mb']:.0f} MB, PSS {p['pss_mb']:.0f} MB",
        flush=True,
    )
    return result


def measure_subset(images: Path, labels: Path, data: Path, factor: int = 10) -> dict:
    """A subset of a dataset with the full label file: the label file names `factor` times the images present
    (the others absent, each a recorded skip). Wall time, peak memory and how many lines the log gave."""
    present = labels.read_text().splitlines()
    work = data / "out_subset"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    full = work / "labels_full.txt"
    with open(full, "w") as f:
        f.write("\n".join(present) + "\n")
        f.write("".join(f"absent_{i:07d}.jpg {i % 1000}\n" for i in range(len(present) * (factor - 1))))
    out = work / "prep"
    run = run_once([sys.executable, "-m", "prep", "dataset=imagenet_val", f"source.image_dir={images}", f"labels.path={full}", "progress=false", f"hydra.run.dir={out}"])
    summary_mb = (out / "summary.json").stat().st_size / 1e6
    shutil.rmtree(work, ignore_errors=True)
    result = {"lines": len(present) * factor, "present": len(present), "seconds": run.seconds, "pss_mb": run.pss_mb, "rss_mb": run.rss_mb,
              "log_lines": run.log_lines, "summary_mb": summary_mb}
    print(f"  subset: {result['lines']:,} label lines, {result['present']:,} present: {run.seconds:.1f} s, peak PSS {run.pss_mb:.0f} MB, "
          f"{run.log_lines} log lines", flush=True)
    return result


def per_record_costs(images: Path, labels: Path, count: int = 20_000) -> list[tuple[str, float]]:
    """CPU microseconds per image of each step a pass-through shard task takes, through prep's own code
    (one process, the first `count` images): what bounds the small-image rate."""
    sys.path.insert(0, str(REPO))
    import hashlib

    from prep.core.values import ShardStats
    from prep.encoders.passthrough import PassthroughEncoder
    from prep.formats.images import check_complete, read_header
    from prep.sources.image_dir import ImageDirSource
    from prep.writers import record_values
    from prep.writers.tfrecord import TFRecordWriter

    names = [line.split()[0] for line in labels.read_text().splitlines()[:count]]
    source, encoder = ImageDirSource(str(images)), PassthroughEncoder()
    writer = TFRecordWriter(shard_size=5000, features={"image": "encoded", "label": "label", "height": "height", "width": "width", "chans": "channels"})
    from prep.core.values import Item

    items = [Item(name, i % 1000, name) for i, name in enumerate(names)]
    payloads = [source.read_stamped(item.ref)[0] for item in items]  # warm
    encoded = [encoder.encode(p) for p in payloads]
    values = [record_values(item, e, None) for item, e in zip(items, encoded)]
    frames = [writer.frame(v) for v in values]
    stats = ShardStats()
    digest = hashlib.sha256()
    steps = [
        ("open, read and close the file (read_stamped)", lambda i: source.read_stamped(items[i].ref)),
        ("read the header (read_header)", lambda i: read_header(payloads[i])),
        ("check the JPEG is complete (check_complete)", lambda i: check_complete(payloads[i], "jpeg")),
        ("the whole pass-through encode (both, and Encoded)", lambda i: encoder.encode(payloads[i])),
        ("the record's values (record_values)", lambda i: record_values(items[i], encoded[i], None)),
        ("tf.train.Example bytes and TFRecord framing (frame)", lambda i: writer.frame(values[i])),
        ("sha256 of the record's bytes", lambda i: [digest.update(c) for c in frames[i]]),
        ("the shard's statistics (ShardStats.add)", lambda i: stats.add(items[i].label, encoded[i])),
    ]
    out = []
    for name, step in steps:
        started = time.process_time()
        for i in range(len(items)):
            step(i)
        out.append((name, (time.process_time() - started) / len(items) * 1e6))
    # The whole shard task, as a worker runs it: the steps above plus the loop, the shard file's writes and
    # the system calls' kernel time (user + system CPU of this process).
    import tempfile

    from prep.core.table import ItemTable
    from prep.core.values import ShardPlan
    from prep.run.shards import Job, write_shard

    with tempfile.TemporaryDirectory(dir=images.parent) as out_dir:
        os.mkdir(os.path.join(out_dir, ".prep-manifest"))  # what the run's manifest start makes
        job = Job(source, encoder, writer, out_dir, None, "skip")
        plan = ShardPlan("shard.tfrecord", "train", 0, 1, ItemTable.of(items))
        before = os.times()
        write_shard(job, plan)
        after = os.times()
    cpu = (after.user - before.user) + (after.system - before.system)
    out.append(("**the whole shard task (write_shard), user + system CPU**", cpu / len(items) * 1e6))
    return out


def report(results: list[dict], repeat: int, where: str, costs: list[tuple[str, float]] | None = None, subset: dict | None = None) -> str:
    rows = [
        "| images | data | copy floor s (CPU-s) | prep s (CPU-s) | prep / floor | planning (to first shard) | peak RSS, summed | peak PSS, summed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        p, c = r["prep"], r["copy"]
        rows.append(
            f"| {r['count']:,} | {r['bytes'] / 1e6:,.0f} MB | {c['seconds']:.1f} ({c['cpu']:.1f}) | {p['seconds']:.1f} ({p['cpu']:.1f}) | "
            f"{p['seconds'] / c['seconds']:.2f}x | {p['first_shard']:.1f} s | {p['rss_mb']:.0f} MB | {p['pss_mb']:.0f} MB |"
        )
    big, small = max(results, key=lambda r: r["count"]), min(results, key=lambda r: r["count"])
    bp = big["prep"]
    targets = [
        (f"{big['count']:,} images, whole process <= 3x the copy floor", f"{bp['seconds'] / big['copy']['seconds']:.2f}x", bp["seconds"] <= 3 * big["copy"]["seconds"]),
        (f"{big['count']:,} images, peak resident memory < 300 MB (PSS summed; RSS summed is an upper bound)", f"{bp['pss_mb']:.0f} MB ({bp['rss_mb']:.0f} MB)", bp["pss_mb"] < 300),
        (f"{big['count']:,} images, planning (start to first shard) < 5 s", f"{bp['first_shard']:.1f} s", bp["first_shard"] < 5),
    ]
    if small is not big:
        per_image = (bp["pss_mb"] - small["prep"]["pss_mb"]) * 2**20 / (big["count"] - small["count"])
        targets.append((
            f"memory flat from {small['count']:,} to {big['count']:,} images (peak PSS)",
            f"{small['prep']['pss_mb']:.0f} -> {bp['pss_mb']:.0f} MB, {per_image:+.0f} bytes an image", per_image < 16,
        ))
    lines = ["| target | measured | met |", "|---|---:|:---:|"] + [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in targets]
    if small is not big:
        per_image = (bp["pss_mb"] - small["prep"]["pss_mb"]) * 2**20 / (big["count"] - small["count"])
        shard_us = costs[-1][1] if costs else float("nan")
        lines += ["", (
            f"What bounds it. The copy floor spends {big['copy']['cpu']:.1f} CPU-s on {big['count']:,} files; a pass-through "
            f"shard task spends about {shard_us:.0f} µs of CPU per image (below: reading the file, checking the JPEG's header "
            "and that it is complete, building the tf.train.Example and its CRC32C framing, the shard's sha256, in Python), "
            f"so two cores need about {shard_us * big['count'] / 2e6:.0f} s for the shards alone, after planning "
            f"({bp['first_shard']:.1f} s to the first shard). Memory grows by about {per_image:.0f} bytes an image: the item "
            "table holds about 31 (names in one buffer, labels and refs in arrays), the rest is planning's index arrays "
            "(path hashes for the duplicate and unlabelled checks, label codes, line numbers), freed once the plan is made."
        )]
    if subset:
        lines += ["", (
            f"A subset of a dataset with its full label file: {subset['lines']:,} label lines, {subset['present']:,} of the images "
            f"present (the rest are recorded skips): {subset['seconds']:.1f} s, peak PSS {subset['pss_mb']:.0f} MB (RSS summed "
            f"{subset['rss_mb']:.0f} MB), {subset['log_lines']} log lines, a summary.json of {subset['summary_mb']:.0f} MB listing "
            "every skip."
            + (" Before the skip log and streamed JSON files, the same case took 45 s, 1.66 GB RSS and 900,000 log lines "
               "(measured once, by hand)." if (subset["lines"], subset["present"]) == (1_000_000, 100_000) else "")
        )]
    if costs:
        lines += ["", "What a pass-through shard task spends per image (CPU microseconds, one process, prep's own functions on "
                  "20,000 of these images; the encode row includes the two above it):", "",
                  "| step | µs per image |", "|---|---:|"] + [f"| {name} | {us:.1f} |" for name, us in costs]
    return (
        f"## Scale: many small images (`make bench-scale`, median of {repeat} alternating runs)\n\n"
        f"Measured on {time.strftime('%Y-%m-%d')}: {machine()}.\n\n"
        "Small JPEGs of about 1 KB (crops of scikit-learn's sample photos), all in one folder, one space-separated "
        f"label file, pass-through to TFRecord (`dataset=imagenet_val`); images and outputs {where}. Copy floor: `find DIR "
        "-type f -print0 | xargs -0 cat > one_file`. CPU time is user + system of the whole process tree. Planning is "
        "the time from the start of the process until the first shard file appears.\n\n"
        + "\n".join(rows) + "\n\n" + "\n".join(lines) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="numbers of images (default 100,000 and 1,000,000)")
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each method; the median is reported")
    parser.add_argument("--data", type=Path, default=None, help="keep the generated sets (and the outputs) on disk here, not in /dev/shm")
    parser.add_argument("--out", type=Path, default=HERE / "results.md", help="the results file whose scale section is replaced")
    args = parser.parse_args(argv)
    memory = args.data is None
    data = Path("/dev/shm/prep-bench-scale") if memory else args.data
    data.mkdir(parents=True, exist_ok=True)
    print(f"bench-scale on {machine()}; data and outputs in {data}", flush=True)
    try:
        results = [measure_size(count, data, args.repeat) for count in args.sizes]
        images, labels = make_small(data, min(args.sizes))
        costs = per_record_costs(images, labels)
        subset = measure_subset(images, labels, data)
    finally:
        if memory:
            shutil.rmtree(data, ignore_errors=True)  # 4 GB of memory
    section = report(results, args.repeat, "in memory (/dev/shm, tmpfs)" if memory else f"on disk ({data})", costs, subset)
    replace_section(args.out, "## Scale:", section)
    print("\n" + section + f"\nwritten to {args.out}")
    return 0


def replace_section(path: Path, heading: str, section: str) -> None:
    """Put `section` in the results file in place of the one starting with `heading` (or at the end)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
