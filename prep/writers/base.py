"""What every writer shares: the record's fields and their types, sharding (how many records per shard),
shard naming, label range checks, and the hooks a format fills in (framing, a footer, run-level files)."""

from __future__ import annotations

from collections.abc import Mapping

from prep.core.errors import ConfigError, InputError, WriteError
from prep.core.values import Encoded, Item
from prep.formats import protowire
from prep.writers.pattern import check_pattern
from prep.writers.sink import ShardSink

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
FILLS = ("even", "exact")  # writer.shard_fill: how writer.shard_size shares records out, see shard_sizes()


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


class RecordWriter:
    """What every record format shares: sharding, shard naming and the feature spec."""

    format = ""  # summary.json's "format", and the name verify and the loaders know the shards by
    types: tuple[str, ...] = ()  # the feature types this format can store (features: key: field:type)
    compression: str | None = None  # a whole-shard compression ("gzip", "zlib"), where the format has one
    dali_index: bool = False  # whether a DALI index file is written beside every shard

    def __init__(
        self, shard_size: int | None, num_shards: int | None, pattern: str, features: Mapping[str, str], shard_fill: str = "even"
    ) -> None:
        if shard_fill not in FILLS:
            raise ConfigError(f"writer.shard_fill={shard_fill!r}: choose {' or '.join(FILLS)}")
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
        self.shard_fill = shard_fill
        self.num_shards = num_shards
        self.pattern = check_pattern(pattern)
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
        """Records per shard for a split. Never a shard of one record left over (the `tfrecord` PyPI reader
        cannot read such a shard, and it skews a sharded reader's work):

        - writer.num_shards: that many shards, as even as possible (sizes differ by at most one).
        - writer.shard_size with shard_fill=even (the default): as few shards as hold shard_size records
          each, as even as possible: 10,001 records at 5,000 give 3,334 + 3,334 + 3,333, never over shard_size
          (but for shard_size=2 and an odd count, where one shard holds 3).
        - shard_fill=exact: shards of exactly shard_size and the rest in the last one (seed 002's 5,000 per
          shard); a rest of a single record joins the shard before it (5,001 records: one shard of 5,001).

        A split of one record is one shard of one record: nothing else can hold it.
        """
        if self.num_shards is not None:
            if self.num_shards > num_items:
                raise ConfigError(
                    f"writer.num_shards={self.num_shards} is more than the {num_items} images of split {split!r}: "
                    "a shard is never empty, so lower num_shards or use writer.shard_size"
                )
            return _even(num_items, self.num_shards)
        if self.shard_fill == "even":
            count = -(-num_items // self.shard_size)
            if self.shard_size == 2 and num_items % 2 and count > 1:  # 2 + 2 + 1 would leave one: 2 + 3 instead (1 stays 1)
                count -= 1
            return _even(num_items, count)
        sizes = [min(self.shard_size, num_items - start) for start in range(0, num_items, self.shard_size)]
        if len(sizes) > 1 and sizes[-1] == 1 and self.shard_size > 1:
            leftover = sizes.pop()
            sizes[-1] += leftover
        return sizes

    def shard_path(self, dataset: str, split: str, index: int, count: int) -> str:
        return self.pattern.format(dataset=dataset, split=split, index=index, number=index + 1, count=count)

    def open(self, output_dir: str, path: str) -> ShardSink:
        return ShardSink(self, output_dir, path)

    def footer(self) -> bytes:
        """Bytes that end every shard of this format (a tar's end-of-archive blocks); none by default."""
        return b""

    def metadata_paths(self, dataset: str, splits: list[str], listing) -> list[str]:
        """The run-level files this format writes beside the shards (relative paths), known before the first
        shard so the planner can check them against the shard names; metadata_files() writes exactly these."""
        return []

    def metadata_files(self, summary: dict, listing) -> dict[str, bytes]:
        """Run-level files (relative path -> content) made from the finished run's summary, written before
        summary.json and listed in it (e.g. TFDS's dataset_info.json, a wids index)."""
        return {}

    def stores_shape(self) -> bool:
        """Whether a record stores its image's height, width and channels (raw pixels need all three to be read
        back: a run may hold grayscale and colour images of one size)."""
        fields = {field for field, _ in self.features.values()}
        return {"height", "width", "channels"} <= fields

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


def _even(num_items: int, num_shards: int) -> list[int]:
    base, extra = divmod(num_items, num_shards)
    return [base + (1 if i < extra else 0) for i in range(num_shards)]


def join_small_ends(head: bytes, chunks: list, tail: bytes) -> list:
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


