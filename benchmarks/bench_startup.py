"""Start-up time: `prep --help`, each tool's --help and a 10-image run, whole processes, median of N.

Each command runs as a user runs it (`python -m prep ...`, this checkout's prep first on PYTHONPATH), so the
time includes the interpreter, every import, Hydra composing the config and, for the run, writing the shard,
report.html, summary.json and .hydra/. Python's compiled bytecode is cached as an installed package has it
(in a temporary PYTHONPYCACHEPREFIX, even where PYTHONDONTWRITEBYTECODE is set: compiling prep's modules on
every run is not start-up a user pays). The 10 images are JPEGs cut from scikit-learn's sample photos (no
download), with a space label file; they, the cache and the runs live in a temporary folder removed afterwards.

    python benchmarks/bench_startup.py [--repeat 10] [--baseline OTHER_CHECKOUT]

With --baseline, the other checkout (e.g. `git worktree add /tmp/before <commit>`) runs each command in
alternation with this one, so both see the same machine load, and the table gets a column for each.
`report()` returns the Markdown section (with issue #14's targets) for benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IMAGES = 10
# Issue #14's targets, whole process on the 2-core machine.
HELP_TARGET_S = 0.5
RUN_TARGET_S = 1.0
TOOLS = ("prep.verify", "prep.inspect", "prep.readbench", "prep.report")
HELP = "prep --help"
RUN = f"prep dataset=images, {IMAGES} JPEGs, space labels (pass-through, TFRecord)"


def make_images(root: Path, count: int = IMAGES) -> Path:
    """`count` JPEGs (crops of the sample photos) in root/images and a space label file root/labels.txt."""
    import cv2
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        photo = photos[i % 2]
        top, left = (i * 37) % 100, (i * 53) % 150
        crop = photo[top : top + 224, left : left + 300, ::-1]  # RGB -> BGR for OpenCV
        ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        (images / f"{i:03d}.jpg").write_bytes(data.tobytes())
        lines.append(f"{i:03d}.jpg {i % 3}\n")
    (root / "labels.txt").write_text("".join(lines))
    return images


def environment(repo: Path, pycache: Path) -> dict[str, str]:
    """repo's prep, whatever the interpreter has installed; bytecode cached in pycache, as an installed package has it."""
    path = os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def commands(root: Path, images: Path) -> dict[str, list[str]]:
    python = sys.executable
    out = {"python -c pass (the interpreter alone)": [python, "-c", "pass"], HELP: [python, "-m", "prep", "--help"]}
    for tool in TOOLS:
        out[f"prep-{tool.split('.')[1]} --help"] = [python, "-m", tool, "--help"]
    out[RUN] = [
        python, "-m", "prep", "dataset=images", f"source.image_dir={images}", "labels=space",
        f"labels.path={root / 'labels.txt'}", f"output_dir={root / 'run'}", "overwrite=true", "progress=false",
    ]  # fmt: skip
    return out


def elapsed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the process and its children) of one run of command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(repeat: int = 10, repos: tuple[Path, ...] = (REPO,)) -> dict[str, list[tuple[float, float]]]:
    """Median (wall, CPU) seconds of each command for each checkout in repos (runs alternate between them),
    after one warm-up run each that fills the page cache and the bytecode cache."""
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="prep-startup-") as tmp:
        root = Path(tmp)
        images = make_images(root)
        envs = [environment(repo, root / f"pycache-{i}") for i, repo in enumerate(repos)]
        for name, command in commands(root, images).items():
            runs: list[list[tuple[float, float]]] = [[] for _ in repos]
            for i in range(repeat + 1):
                for env, kept in zip(envs, runs):
                    measured = elapsed(command, root, env)
                    if i:
                        kept.append(measured)
            results[name] = [(statistics.median(w for w, _ in r), statistics.median(c for _, c in r)) for r in runs]
    return results


def report(repeat: int = 10, baseline: Path | None = None, results: dict[str, list[tuple[float, float]]] | None = None) -> str:
    """The Markdown section for benchmarks/results.md (measured now unless results are given)."""
    repos = (REPO,) if baseline is None else (baseline, REPO)
    results = results if results is not None else measure(repeat, repos)
    if baseline is None:
        columns = ["seconds", "CPU seconds"]
    else:
        columns = [f"baseline ({baseline.name}) s", "this checkout s", "ratio", "baseline CPU s", "this checkout CPU s"]
    lines = [
        "## Start-up",
        "",
        f"Whole processes (`python -m prep ...`), wall and CPU (user + system) time, median of {repeat} runs after one warm-up"
        + (", alternating with the baseline checkout" if baseline else "")
        + ", measured by `python benchmarks/bench_startup.py`.",
        "",
        "| command | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, values in results.items():
        walls, cpus = [f"{wall:.3f}" for wall, _ in values], [f"{cpu:.3f}" for _, cpu in values]
        ratio = [f"{values[0][0] / values[1][0]:.2f}x"] if len(values) == 2 else []
        lines.append(f"| {name} | " + " | ".join(walls + ratio + cpus) + " |")
    help_s, run_s = results[HELP][-1][0], results[RUN][-1][0]
    lines += [
        "",
        "| target | measured | met |",
        "|---|---:|:---:|",
        f"| `prep --help` < {HELP_TARGET_S} s | {help_s:.2f} s | {'yes' if help_s < HELP_TARGET_S else '**no**'} |",
        f"| a {IMAGES}-image run < {RUN_TARGET_S} s | {run_s:.2f} s | {'yes' if run_s < RUN_TARGET_S else '**no**'} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="runs of each command; the median is reported (default 10)")
    parser.add_argument("--baseline", type=Path, help="another checkout of prep to measure side by side (e.g. the commit before a change)")
    args = parser.parse_args(argv)
    print(report(args.repeat, baseline=args.baseline.resolve() if args.baseline else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
