"""`python -m prep.verify OUTPUT_DIR [--decode]`: re-read every shard named in summary.json and check it.

Checks framing and CRCs (TFRecord), record counts, sizes and sha256 against the summary, that every
record has every feature, DALI index files, and with --decode that every image decodes. One line per
shard; exit status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import sys

from prep import storage
from prep import summary as summaries
from prep.errors import PrepError
from prep.formats import ofrecord, protowire, tfrecord


class _HashingReader:
    """Hashes the file's bytes as the record reader pulls them, so each shard is read once."""

    def __init__(self, f) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data


def _decodes(record: dict, fields: dict, raw: bool) -> str | None:
    import cv2
    import numpy as np

    key = {f: k for k, f in fields.items()}
    data = record.get(key.get("encoded", ""), ("", [b""]))[1][0]
    if raw:
        shape = [record.get(key.get(f, ""), ("", [None]))[1][0] for f in ("height", "width", "channels")]
        if None in shape or len(data) != shape[0] * shape[1] * shape[2]:
            return f"raw pixels of {len(data)} bytes do not match height x width x channels {shape}"
        return None
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
        return "image does not decode"
    return None


def verify_shard(output_dir: str, shard: dict, summary: dict, decode: bool = False) -> str | None:
    """None when the shard is as the summary says, else what is wrong (with the record index)."""
    path = storage.join(output_dir, shard["path"])
    fmt = summary["format"]
    required = set(summary["features"])
    fields = summary.get("feature_fields", {})
    raw = set(summary.get("image_formats", {})) == {"raw"}
    offsets = []
    try:
        with storage.open_read(path) as f:
            reader = _HashingReader(f)
            if fmt == "tfrecord":
                stream = tfrecord.decompressing(reader, summary.get("compression"))
                records, decode_record = tfrecord.read_records(stream, shard["path"]), tfrecord.decode_example
            else:
                records, decode_record = ofrecord.read_records(reader, shard["path"]), ofrecord.decode_record
            count = 0
            for offset, payload in records:
                offsets.append((offset, payload))
                record = decode_record(payload)
                missing = required - set(record)
                if missing:
                    return f"record {count} lacks {sorted(missing)}"
                if decode:
                    problem = _decodes(record, fields, raw)
                    if problem:
                        return f"record {count}: {problem}"
                count += 1
            reader.read()  # whatever the decompressor left unread
    except FileNotFoundError:
        return "missing"
    except (tfrecord.RecordError, ofrecord.RecordError, protowire.WireError) as err:
        return str(err).removeprefix(shard["path"] + ": ")
    if count != shard["num_records"]:
        return f"{count} records, summary.json says {shard['num_records']}"
    if reader.size != shard["bytes"]:
        return f"{reader.size} bytes, summary.json says {shard['bytes']}"
    if reader.sha256.hexdigest() != shard["sha256"]:
        return "sha256 differs from summary.json"
    index = path + ".idx"
    if storage.exists(index):
        lines = storage.read_bytes(index).decode().splitlines()
        expected = [f"{offset} {16 + len(payload)}" for offset, payload in offsets]
        if lines != expected:
            return f"DALI index {shard['path']}.idx does not match the record offsets"
    return None


def verify_run(output_dir: str, summary: dict | None = None, decode: bool = False) -> list[tuple[bool, str]]:
    summary = summary or summaries.load(output_dir)
    lines = []
    for shard in summary["shards"]:
        problem = verify_shard(output_dir, shard, summary, decode)
        if problem:
            lines.append((False, f"FAIL {shard['path']}: {problem}"))
        else:
            lines.append((True, f"ok   {shard['path']}: {shard['num_records']} records, {shard['bytes']:,} bytes"))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prep.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", help="a finished run's output directory (with summary.json)")
    parser.add_argument("--decode", action="store_true", help="also decode every image")
    args = parser.parse_args(argv)
    try:
        lines = verify_run(args.output_dir, decode=args.decode)
    except PrepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for _, line in lines:
        print(line)
    bad = sum(1 for ok, _ in lines if not ok)
    print(f"{len(lines) - bad} of {len(lines)} shards ok" + (f", {bad} failed" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
