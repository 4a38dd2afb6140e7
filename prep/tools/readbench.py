"""`prep-readbench DIR` (or `python -m prep.readbench`): read throughput of a run's shards with tf.data (records/s, MB/s).

Pointed at a sweep directory, it measures every job and adds the read columns to sweep_summary.csv,
so shard sizes can be compared by how fast they read, not only by how fast they were written.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time

from prep.core.errors import PrepError
from prep.runfiles import summary as summaries


def measure(run_dir: str, *, parse: bool = False, decode: bool = False, repeat: int = 3) -> dict:
    """Median over `repeat` full passes (after one warm-up pass) of reading every shard of a run."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as err:
        raise PrepError(f"readbench reads with tf.data, and TensorFlow is not installed ({err}): pip install 'prep-records[tf]'") from None

    from prep.load import check_frames, check_in_run, load_summary, tf_dataset

    summary = load_summary(run_dir)
    if summary["format"] != "tfrecord":
        raise PrepError(f"{run_dir}: readbench reads TFRecord runs, this one is {summary['format']}")
    total_bytes = sum(s["bytes"] for s in summary["shards"])
    compression = {"gzip": "GZIP", "zlib": "ZLIB"}.get(summary.get("compression") or "", "")
    # TensorFlow opens the files by name: each is checked first to be a regular file of the run, not a link
    files = [check_in_run(run_dir, s["path"]) for s in summary["shards"]]
    check_frames(run_dir, summary, None)  # TensorFlow's reader crashes on a crafted frame: each is checked first

    def dataset():
        if parse or decode:
            parts = [tf_dataset(run_dir, split, decode=decode) for split in summary["splits"] if summary["splits"][split]["num_records"]]
            out = parts[0]
            for part in parts[1:]:
                out = out.concatenate(part)
            return out
        # Raw reads, with shards read in parallel as a training input pipeline would.
        return tf.data.TFRecordDataset(files, compression_type=compression, num_parallel_reads=tf.data.AUTOTUNE)

    def one_pass() -> tuple[int, float]:
        start = time.perf_counter()
        count = 0
        for _ in dataset():
            count += 1
        return count, time.perf_counter() - start

    one_pass()  # warm the page cache and tf.data's function tracing
    times = []
    for _ in range(max(1, repeat)):
        count, seconds = one_pass()
        times.append(seconds)
    seconds = statistics.median(times)
    mode = "decode" if decode else "parse" if parse else "read"
    return {
        "read_mode": mode,
        "read_records_per_second": round(count / seconds, 1),
        "read_mb_per_second": round(total_bytes / seconds / 1e6, 1),
        "read_seconds": round(seconds, 4),
    }


EXAMPLES = """examples (TensorFlow needed: pip install 'prep-records[tf]'):
  %(prog)s outputs/digits/2026-11-21_10-00-00_4242                 records/s and MB/s of one run
  %(prog)s outputs/digits/2026-11-21_10-00-00_4242 --decode        ... parsing and decoding every image
  %(prog)s outputs/digits/multirun/2026-11-21_01-02-03_4242        every job of a sweep, into sweep_summary.csv"""


def _about() -> str:
    """The module docstring without its command line: what the tool does, for --help."""
    about = __doc__.split(": ", 1)[1]
    return about[0].upper() + about[1:]


def main(argv: list[str] | None = None, prog: str = "python -m prep.readbench") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=f"{EXAMPLES}\n\n{_about()}", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dir", help="a run's output directory, or a sweep directory")
    parser.add_argument("--parse", action="store_true", help="also parse every tf.train.Example")
    parser.add_argument("--decode", action="store_true", help="also parse and decode every image")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the median is reported (default 3)")
    args = parser.parse_args(argv)
    try:
        if os.path.lexists(os.path.join(args.dir, summaries.SUMMARY)):
            result = measure(args.dir, parse=args.parse, decode=args.decode, repeat=args.repeat)
            print(" ".join(f"{k}={v}" for k, v in result.items()))
            return 0
        from prep.tools import sweeps as sweep

        jobs = sweep.job_dirs(args.dir) if os.path.isdir(args.dir) else []
        if not jobs:
            raise PrepError(f"{args.dir}: neither a run (no summary.json) nor a sweep directory (no job folders)")
        rows = sweep.collect(args.dir)
        for row, job_dir in zip(rows, jobs):
            if row["status"] == "ok":
                row.update(measure(job_dir, parse=args.parse, decode=args.decode, repeat=args.repeat))
        print(sweep.write_table(args.dir, rows))
        return 0
    except PrepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def cli() -> None:
    """The `prep-readbench` command."""
    # `prep-readbench ... | head` ends quietly, as other Unix tools do, not with a broken-pipe error line
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main(prog="prep-readbench"))


if __name__ == "__main__":
    sys.exit(main())
