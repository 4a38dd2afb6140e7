"""Writers: which features a record holds, how records are framed, how shards are named and written safely."""

from __future__ import annotations

import gzip
import hashlib
import re
import string
import unicodedata
import zlib
from collections.abc import Callable, Mapping

from prep import storage
from prep.errors import ConfigError, InputError, WriteError
from prep.formats import ofrecord, protowire, tfrecord
from prep.stages import Encoded, Item

# The values a record can hold, and the type each is stored as unless the feature spec says otherwise.
FIELD_TYPES = {
    "encoded": "bytes",
    "format": "bytes",
    "height": "int64",
    "width": "int64",
    "channels": "int64",
    "colorspace": "bytes",
    "label": "int64",
    "text": "bytes",
    "filename": "bytes",
}
_NUMERIC = ("height", "width", "channels", "label")
# The integers each numeric type stores exactly. Outside them int32/int64 wrap around (2**63 would read
# back as -2**63) and float/double round (2**24 + 1 as a float is 2**24): a different label, silently.
EXACT_INTEGERS = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "float": (-(2**24), 2**24),
    "double": (-(2**53), 2**53),
}
_PATTERN_FIELDS = {"dataset", "split", "index", "number", "count"}


def record_values(item: Item, encoded: Encoded, class_names: list[str] | None) -> dict:
    """Field -> value for one record; `text` is None when labels are integers (no class names)."""
    return {
        "encoded": encoded.data,
        "format": encoded.format.encode(),
        "height": encoded.height,
        "width": encoded.width,
        "channels": encoded.channels,
        "colorspace": encoded.colorspace.encode(),
        "label": item.label,
        # surrogateescape: a file or folder name that is not UTF-8 (Linux allows any bytes) is stored as
        # the bytes it has on disk, not refused.
        "text": class_names[item.label].encode("utf-8", "surrogateescape") if class_names else None,
        "filename": item.name.encode("utf-8", "surrogateescape"),
    }


class _HashingFile:
    """The shard's bytes on their way out: counted, hashed, and written with few copies.

    Small pieces (record headers, labels) are gathered in a buffer; a large one (an image) goes to the
    unbuffered file directly after the buffer, so image bytes are not copied through a write buffer.
    """

    _GATHER = 1 << 20

    def __init__(self, file) -> None:
        self._file = file
        self._pending = bytearray()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def _write_all(self, data) -> None:
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) :]

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        if len(data) < protowire.SMALL:
            self._pending += data
            if len(self._pending) >= self._GATHER:
                self.flush()
        else:
            self.flush()
            self._write_all(data)
        return len(data)

    def flush(self) -> None:
        if self._pending:
            self._write_all(self._pending)
            self._pending.clear()


class ShardSink:
    """One shard being written under a temporary name and published whole when complete.

    Locally it is `<name>.partial`, renamed at the end; on object storage it is uploaded once, complete.
    A run that dies part-way never leaves half a shard under a final name.
    """

    def __init__(self, writer: "RecordWriter", output_dir: str, path: str) -> None:
        self.writer = writer
        self.path = path
        self.final = storage.join(output_dir, path)
        self.num_records = 0
        self._offset = 0  # position in the uncompressed stream, for DALI index lines
        self._index: list[str] | None = [] if getattr(writer, "dali_index", False) else None
        try:
            self._file = storage.AtomicFile(self.final)
        except OSError as err:
            raise WriteError(f"{self.final}: cannot create shard: {err.strerror}") from None
        self._raw = _HashingFile(self._file.file)
        compression = getattr(writer, "compression", None)
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6) if compression == "gzip" else None
        self._zlib = zlib.compressobj(6) if compression == "zlib" else None

    def _out(self, data: bytes) -> None:
        if self._gzip is not None:
            self._gzip.write(data)
        elif self._zlib is not None:
            self._raw.write(self._zlib.compress(data))
        else:
            self._raw.write(data)

    def write(self, values: Mapping[str, object]) -> None:
        chunks = self.writer.frame(values)
        size = sum(map(len, chunks))
        try:
            if self._gzip is None and self._zlib is None:
                raw = self._raw
                for chunk in chunks:
                    raw.write(chunk)
            else:
                for chunk in chunks:
                    self._out(chunk)
        except OSError as err:
            raise WriteError(f"{self.final}: write failed: {err.strerror}") from None
        if self._index is not None:
            self._index.append(f"{self._offset} {size}\n")
        self._offset += size
        self.num_records += 1

    def commit(self, before_publish: Callable[[int, str, list[str]], None] | None = None) -> tuple[int, str, list[str]]:
        """Publish the shard under its final name; returns (bytes, sha256, extra files beside it, relative).

        before_publish(bytes, sha256, extra files) runs when the shard is complete but not yet under its
        final name (the run records it in its manifest there); if it fails, nothing is published.
        """
        extra = []
        try:
            if self._gzip is not None:
                self._gzip.close()
            if self._zlib is not None:
                self._raw.write(self._zlib.flush())
            self._raw.flush()
            if self._index is not None:
                # The index first: a published shard always has its index beside it.
                storage.write_bytes(self.final + ".idx", "".join(self._index).encode())
                extra.append(self.path + ".idx")
            if before_publish is not None:
                before_publish(self._raw.size, self._raw.sha256.hexdigest(), extra)
            self._file.commit()
        except OSError as err:
            self.abort()
            raise WriteError(f"{self.final}: cannot finish shard: {err.strerror or err}") from None
        except BaseException:
            self.abort()
            raise
        return self._raw.size, self._raw.sha256.hexdigest(), extra

    def abort(self) -> None:
        self._file.abort()

    def __enter__(self) -> "ShardSink":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


class RecordWriter:
    """What every record format shares: sharding, shard naming and the feature spec."""

    format = ""
    types: tuple[str, ...] = ()

    def __init__(self, shard_size: int | None, num_shards: int | None, pattern: str, features: Mapping[str, str]) -> None:
        if shard_size is not None and num_shards is not None:
            raise ConfigError(
                f"writer.shard_size={shard_size} and writer.num_shards={num_shards} are both set: choose one "
                f"(add writer.shard_size=null to use writer.num_shards)"
            )
        if shard_size is None and num_shards is None:
            raise ConfigError("set writer.shard_size (records per shard) or writer.num_shards (shards per split)")
        for key, value in (("shard_size", shard_size), ("num_shards", num_shards)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"writer.{key}={value}: must be a positive integer")
        self.shard_size = shard_size
        self.num_shards = num_shards
        self.pattern = _check_pattern(pattern)
        self.features = self._parse_features(features)

    def _parse_features(self, features: Mapping[str, str]) -> dict[str, tuple[str, str]]:
        """{key: "field" or "field:type"} -> {key: (field, type)}; a null value leaves the key out."""
        parsed = {}
        for key, spec in (features or {}).items():
            if spec is None:
                continue
            field, _, kind = str(spec).partition(":")
            if field not in FIELD_TYPES:
                raise ConfigError(f"writer.features.{key}={spec!r}: unknown field {field!r}; fields are {sorted(FIELD_TYPES)}")
            kind = kind or FIELD_TYPES[field]
            if kind not in self.types:
                raise ConfigError(f"writer.features.{key}={spec!r}: {self.format} stores {list(self.types)}, not {kind!r}")
            if (FIELD_TYPES[field] == "bytes") != (kind == "bytes"):
                raise ConfigError(f"writer.features.{key}={spec!r}: {field} cannot be stored as {kind}")
            parsed[key] = (field, kind)
        if not any(field == "encoded" for field, _ in parsed.values()):
            raise ConfigError(f"writer.features has no key for the image (a value 'encoded'): {dict(features or {})}")
        return parsed

    def feature_types(self, has_text: bool) -> dict[str, str]:
        """Record key -> stored type, as summary.json lists them (text only when labels are names)."""
        return {key: kind for key, (field, kind) in self.features.items() if has_text or field != "text"}

    def feature_fields(self, has_text: bool) -> dict[str, str]:
        """Record key -> the value it holds (encoded, label, ...), so readers need not guess key names."""
        return {key: field for key, (field, kind) in self.features.items() if has_text or field != "text"}

    def shard_sizes(self, num_items: int, split: str) -> list[int]:
        """Records per shard for a split: full shards of shard_size, or num_shards as even as possible."""
        if self.num_shards is None:
            return [min(self.shard_size, num_items - start) for start in range(0, num_items, self.shard_size)]
        if self.num_shards > num_items:
            raise ConfigError(
                f"writer.num_shards={self.num_shards} is more than the {num_items} images of split {split!r}: "
                "a shard is never empty, so lower num_shards or use writer.shard_size"
            )
        base, extra = divmod(num_items, self.num_shards)
        return [base + (1 if i < extra else 0) for i in range(self.num_shards)]

    def shard_path(self, dataset: str, split: str, index: int, count: int) -> str:
        return self.pattern.format(dataset=dataset, split=split, index=index, number=index + 1, count=count)

    def open(self, output_dir: str, path: str) -> ShardSink:
        return ShardSink(self, output_dir, path)

    def check_labels(self, listing) -> None:
        """InputError naming the label-file line when a label id does not fit a type the records store it as.

        Called with the reader's Listing before anything is written; its label_bounds (the lowest and highest
        id, with their lines) are enough, since each type holds one contiguous range of integers.
        """
        for bound in listing.label_bounds or ():
            for key, (field, kind) in self.features.items():
                if field != "label" or kind not in EXACT_INTEGERS:
                    continue
                low, high = EXACT_INTEGERS[kind]
                if low <= bound.value <= high:
                    continue
                fits_int64 = kind != "int64" and "int64" in self.types and -(2**63) <= bound.value < 2**63
                store = f"store it as int64 (features.{key}=label:int64), " if fits_int64 else ""
                raise InputError(
                    f"{bound.where}: label {_show_label(bound.text)} does not fit {key!r}, stored as {kind} ({low}..{high}); "
                    f"fix the label, {store}or set labels.kind=name to number the classes 0..n-1"
                )

    def typed(self, values: Mapping[str, object]) -> dict[str, tuple[str, list]]:
        out = {}
        for key, (field, kind) in self.features.items():
            value = values[field]
            if value is None:
                continue
            if kind in EXACT_INTEGERS:
                # The last guard: the reader's check_labels runs first, but no path may wrap or round silently.
                low, high = EXACT_INTEGERS[kind]
                if not low <= value <= high:
                    name = values.get("filename") or b""
                    raise WriteError(
                        f"{name.decode('utf-8', 'replace')}: {field} {_show_int(value)} does not fit {key!r}, stored as {kind} "
                        f"({low}..{high}); not written"
                    )
                if kind in ("float", "double"):
                    value = float(value)
            out[key] = (kind, [value])
        return out

    def frame(self, values: Mapping[str, object]) -> list[bytes]:
        raise NotImplementedError


def _join_small_ends(head: bytes, chunks: list, tail: bytes) -> list:
    """Frame bytes around a record's chunks, joined to its small first and last chunks: fewer writes."""
    parts = list(chunks)
    if parts and len(parts[0]) < protowire.SMALL:
        parts[0] = head + parts[0]
    else:
        parts.insert(0, head)
    if tail:
        if len(parts[-1]) < protowire.SMALL:
            parts[-1] = parts[-1] + tail
        else:
            parts.append(tail)
    return parts


def _show_label(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def _show_int(value: int) -> str:
    # str() of an integer over 4,300 digits raises; such a value is shown by its size.
    bits = abs(value).bit_length()
    return str(value) if bits < 1000 else f"(an integer of about {int(bits * 0.30103) + 1} digits)"


# Values of each field's type to try a pattern with: a pattern is checked by formatting it, because its
# format specs only fail (or succeed) when applied to a value: "{index:s}" is a ValueError at write time.
_SAMPLES = (
    {"dataset": "dataset", "split": "train", "index": 0, "number": 1, "count": 2},
    {"dataset": "dataset", "split": "train", "index": 1, "number": 2, "count": 2},
    {"dataset": "dataset", "split": "validation", "index": 99999, "number": 100000, "count": 100000},
)
_MAX_NAME_BYTES = 255  # the longest file or folder name common file systems (ext4, APFS, NTFS) accept


def _check_pattern(pattern: str) -> str:
    """The shard-name template, checked whole before anything is written: ConfigError naming writer.pattern."""

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"writer.pattern={pattern!r}: {why}")

    if not isinstance(pattern, str) or not pattern:
        raise refuse("give a shard name template, e.g. \"{dataset}-{split}-{index:05d}\"")
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as err:
        raise refuse(f"{err} (write a literal brace as {{{{ or }}}})") from None
    used = [(name, spec, conversion) for _, name, spec, conversion in parsed if name is not None]
    unknown = sorted({name for name, _, _ in used if re.split(r"[.\[]", name)[0] not in _PATTERN_FIELDS})
    if unknown:
        raise refuse(f"unknown field(s) {unknown}; use {sorted(_PATTERN_FIELDS)}")
    for name, spec, conversion in used:
        field = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if name not in _PATTERN_FIELDS:
            raise refuse(f"{field}: only plain field names are accepted (no attribute or index access); use {sorted(_PATTERN_FIELDS)}")
        if conversion:
            raise refuse(f"{field}: conversions (!r, !s, !a) are not accepted; use {{{name}}} or a format spec such as {{index:05d}}")
        if "{" in spec or "}" in spec:
            raise refuse(f"{field}: fields inside a format spec are not accepted; write the width as a number, e.g. {{index:05d}}")
        if any(int(number) > _MAX_NAME_BYTES for number in re.findall(r"\d+", spec)):
            raise refuse(f"{field}: a width or precision over {_MAX_NAME_BYTES}, longer than a file name can be")
        for sample in _SAMPLES:
            try:
                format(sample[name], spec)
            except (ValueError, OverflowError) as err:  # "{index:c}" past U+10FFFF overflows
                what = "text" if isinstance(sample[name], str) else "an integer"
                raise refuse(f"{field} cannot format {name} ({what}): {err}; e.g. {{index:05d}} or {{split}}") from None
    if not {name for name, _, _ in used} & {"index", "number"}:
        raise refuse("needs {index} or {number} so that shards get distinct names")
    paths = [pattern.format(**sample) for sample in _SAMPLES]
    if paths[0] == paths[1]:
        raise refuse(f"gives shards 0 and 1 the same name {paths[0]!r}: format {{index}} or {{number}} so that names differ")
    if "\\" in pattern:
        raise refuse("backslashes are not accepted: separate folders with /")
    for path in paths:
        bad = next((c for c in path if unicodedata.category(c) in ("Cc", "Cs")), None)
        if bad is not None:
            raise refuse(f"gives {path!r}, with a control character {bad!r}: names must be printable")
        parts = path.split("/")
        if path.startswith("/") or ".." in parts:
            raise refuse("must stay inside the output directory (no leading / and no .. folder)")
        if any(part in ("", ".") for part in parts):
            raise refuse(f"gives {path!r}, with an empty or '.' folder name: write each folder once, e.g. {{split}}/part-{{index}}")
        longest = max(parts, key=lambda part: len(part.encode("utf-8")))
        if len(longest.encode("utf-8")) > _MAX_NAME_BYTES:
            raise refuse(f"gives a name of {len(longest.encode('utf-8'))} bytes ({longest[:30]!r}...), over the {_MAX_NAME_BYTES} file systems accept")
    return pattern


class TFRecordWriter(RecordWriter):
    """TFRecord shards of tf.train.Example; optional gzip/zlib compression and DALI index files."""

    format = "tfrecord"
    types = tuple(tfrecord.KINDS)

    def __init__(
        self,
        shard_size: int | None = 1000,
        num_shards: int | None = None,
        pattern: str = "{dataset}-{split}.tfrecord-{index:05d}-of-{count:05d}",
        features: Mapping[str, str] | None = None,
        compression: str | None = None,
        dali_index: bool = False,
    ) -> None:
        super().__init__(shard_size, num_shards, pattern, features or {})
        if compression not in (None, "gzip", "zlib"):
            raise ConfigError(f"writer.compression={compression!r}: choose gzip, zlib or null")
        if compression and dali_index:
            raise ConfigError(
                f"writer.dali_index=true needs uncompressed shards (DALI indexes raw byte offsets), but writer.compression={compression}"
            )
        self.compression = compression
        self.dali_index = dali_index

    def frame(self, values: Mapping[str, object]) -> list[bytes]:
        chunks, size = tfrecord.example_chunks(self.typed(values))
        return _join_small_ends(tfrecord.frame_header(size), chunks, tfrecord.payload_footer(chunks))


class OFRecordWriter(RecordWriter):
    """OneFlow OFRecord part files (`part-0`, ...), one folder per split."""

    format = "ofrecord"
    types = tuple(ofrecord.KINDS)

    def __init__(
        self,
        shard_size: int | None = None,
        num_shards: int | None = 5,
        pattern: str = "{split}/part-{index}",
        features: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(shard_size, num_shards, pattern, features or {})

    def frame(self, values: Mapping[str, object]) -> list[bytes]:
        chunks, size = ofrecord.record_chunks(self.typed(values))
        return _join_small_ends(ofrecord.frame_header(size), chunks, b"")
