"""WebDataset samples in a tar: one sample per image, members `<key>.<ext>` for the image, `<key>.cls` (the
label as decimal text) and `<key>.json` (filename, class name, height, width, channels, format).

webdataset and wids split a member name into key and extension at the first dot of its base name and
group consecutive members with the same key into a sample, so keys here are digits only (the record's
position in its split, zero-padded: unique, sorted, and free of dots). Raw pixels are stored as `.npy`
(uint8, height x width x channels) with a fixed header, byte for byte what numpy.save writes.

A sample read back is a record like the other formats' ({key: (kind, [value])}), so verify, inspect and
prep.load treat a tar like any shard: `image` (the image member, whatever its extension; the pixels of a
`.npy`), `cls`, and each `.json` field as `json.<field>`.
"""

from __future__ import annotations

import ast
import json
import re
import struct
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from prep.formats import tar

# Stored image format -> member extension: the names webdataset's default image decoder (PIL) recognises;
# a format not listed keeps its own name (webdataset then hands its bytes over undecoded).
EXTENSIONS = {
    "jpeg": "jpg", "png": "png", "gif": "gif", "bmp": "bmp", "webp": "webp", "tiff": "tiff",
    "jp2": "jp2", "j2k": "j2k", "pnm": "pnm", "ras": "ras", "raw": "npy",
}  # fmt: skip
KEY_DIGITS = 10  # sample keys: the position in the split, zero-padded to this many digits
# Record keys of a sample read back, and the field each holds (summary.json's feature_fields).
IMAGE, LABEL = "image", "cls"
JSON_FIELDS = {"filename": "filename", "class": "text", "height": "height", "width": "width", "channels": "channels", "format": "format"}
FIELDS = {IMAGE: "encoded", LABEL: "label", **{f"json.{name}": field for name, field in JSON_FIELDS.items()}}
_NPY_MAGIC = b"\x93NUMPY\x01\x00"
_NPY_ALIGN = 64  # numpy pads its header so the data starts on a 64-byte boundary
_CLS = re.compile(rb"-?[0-9]+")


class SampleError(tar.TarError):
    """A sample whose members are not what prep writes (missing, extra, or unreadable)."""


def extension(fmt: str) -> str:
    return EXTENSIONS.get(fmt, fmt)


def sample_key(position: int) -> str:
    return f"{position:0{KEY_DIGITS}d}"


def npy_header(height: int, width: int, channels: int) -> bytes:
    """The .npy (format 1.0) header of a C-ordered uint8 array of shape (height, width, channels)."""
    text = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d, %d), }" % (height, width, channels)
    pad = -(len(_NPY_MAGIC) + 2 + len(text) + 1) % _NPY_ALIGN
    text = text + " " * pad + "\n"
    return _NPY_MAGIC + struct.pack("<H", len(text)) + text.encode("latin1")


def npy_pixels(data: bytes) -> tuple[tuple[int, ...], bytes]:
    """(shape, pixel bytes) of a C-ordered uint8 .npy; SampleError for anything else."""
    if data[:8] != _NPY_MAGIC or len(data) < 10:
        raise SampleError("the .npy member is not a version 1.0 .npy file")
    size = struct.unpack("<H", data[8:10])[0]
    try:
        meta = ast.literal_eval(data[10 : 10 + size].decode("latin1"))
        descr, fortran, shape = meta["descr"], meta["fortran_order"], tuple(meta["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError, MemoryError, RecursionError):
        raise SampleError("the .npy member's header does not parse") from None
    if descr != "|u1" or fortran is not False or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise SampleError(f"the .npy member holds {descr} {'Fortran' if fortran else 'C'}-ordered {shape}, not uint8 pixels")
    pixels = data[10 + size :]
    expected = 1
    for n in shape:
        expected *= n
    if len(pixels) != expected:
        raise SampleError(f"the .npy member's shape {shape} needs {expected} bytes, it holds {len(pixels)}")
    return shape, pixels


def metadata(values: Mapping[str, object]) -> bytes:
    """The .json member: UTF-8, sorted keys. A file or class name that is not UTF-8 (kept as its bytes on
    disk) is written with \\u escapes instead, which JSON readers turn back into the same string."""
    fields = {
        "filename": values["filename"].decode("utf-8", "surrogateescape"),
        "height": values["height"],
        "width": values["width"],
        "channels": values["channels"],
        "format": values["format"].decode("utf-8", "surrogateescape"),
    }
    if values.get("text") is not None:
        fields["class"] = values["text"].decode("utf-8", "surrogateescape")
    try:
        return json.dumps(fields, sort_keys=True, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(fields, sort_keys=True).encode("ascii")


def sample_chunks(key: str, values: Mapping[str, object]) -> list[bytes]:
    """One sample's tar members as chunks, in a fixed order: image, .cls, .json. The image bytes stay their
    own chunk (written without a copy); the small members are joined."""
    fmt = values["format"].decode("ascii", "replace")
    image = values["encoded"]
    head = npy_header(values["height"], values["width"], values["channels"]) if fmt == "raw" else b""
    size = len(head) + len(image)
    label = str(values["label"]).encode("ascii")
    meta = metadata(values)
    tail = (
        tar.padding(size)
        + tar.header(f"{key}.{LABEL}", len(label)) + label + tar.padding(len(label))
        + tar.header(f"{key}.json", len(meta)) + meta + tar.padding(len(meta))
    )  # fmt: skip
    return [tar.header(f"{key}.{extension(fmt)}", size) + head, image, tail]


def split_name(name: str) -> tuple[str, str]:
    """(key, extension) as webdataset splits a member name: at the first dot of its base name."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem:
        raise SampleError(f"member {name!r} has no key.extension name")
    return (f"{folder}/{stem}" if folder else stem), ext


def read_samples(stream: BinaryIO, name: str = "<stream>") -> Iterator[tuple[int, bytes]]:
    """(offset, payload) of every sample of a tar: its consecutive members with one key, framed as prep
    writes them (header, data, padding; for prep's own tars the very bytes of the file). TarError for a
    damaged archive, or a key that comes back after another (webdataset would make two samples of it)."""
    seen: set[str] = set()
    current, start, parts = None, 0, []
    for offset, member, data in tar.read_members(stream, name):
        key, _ = split_name(member)
        if key != current:
            if current is not None:
                yield start, b"".join(parts)
            if key in seen:
                raise SampleError(f"{name}: member {member!r} at byte {offset}: key {key!r} appears twice in this shard")
            seen.add(key)
            current, start, parts = key, offset, []
        parts.append(tar.member(member, data))
    if current is not None:
        yield start, b"".join(parts)


def _members(payload: bytes) -> list[tuple[str, bytes]]:
    out, offset = [], 0
    while offset < len(payload):
        block = payload[offset : offset + tar.BLOCK]
        name, size = tar.parse_header(block, f"sample byte {offset}")
        out.append((name, payload[offset + tar.BLOCK : offset + tar.BLOCK + size]))
        offset += tar.BLOCK + size + (-size % tar.BLOCK)
    return out


def decode_sample(payload: bytes) -> dict[str, tuple[str, list]]:
    """A sample's members as a record: {"image": ("bytes", [...]), "cls": ("int64", [label]),
    "json.<field>": (kind, [value])}; strings as UTF-8 bytes, as the other formats hold them."""
    members = {}
    key = None
    for name, data in _members(payload):
        member_key, ext = split_name(name)
        key = key or member_key
        if ext.lower() in members:
            raise SampleError(f"sample {key!r} holds two .{ext} members")
        members[ext.lower()] = (ext, data)
    record: dict[str, tuple[str, list]] = {}
    if LABEL in members:
        text = members.pop(LABEL)[1].strip()
        if not _CLS.fullmatch(text):
            raise SampleError(f"sample {key!r}: .cls holds {text[:20]!r}, not a whole number")
        record[LABEL] = ("int64", [int(text)])
    meta = {}
    if "json" in members:
        try:
            meta = json.loads(members.pop("json")[1])
        except (ValueError, RecursionError):
            raise SampleError(f"sample {key!r}: .json is not JSON") from None
        if not isinstance(meta, dict):
            raise SampleError(f"sample {key!r}: .json is not an object")
        for field, value in sorted(meta.items()):
            if isinstance(value, str):
                record[f"json.{field}"] = ("bytes", [value.encode("utf-8", "surrogateescape")])
            elif isinstance(value, int) and not isinstance(value, bool):
                record[f"json.{field}"] = ("int64", [value])
            else:
                raise SampleError(f"sample {key!r}: .json field {field!r} is {json.dumps(value)[:20]}, not a string or whole number")
    if len(members) > 1:
        raise SampleError(f"sample {key!r} holds {len(members)} image members ({', '.join(sorted('.' + e for e, _ in members.values()))}), prep writes one")
    if members:
        ext, data = next(iter(members.values()))
        fmt = meta.get("format")
        if isinstance(fmt, str) and extension(fmt) != ext:
            raise SampleError(f"sample {key!r}: the image is .{ext} but its .json says format {fmt!r} (.{extension(fmt)})")
        if ext == "npy":
            shape, data = npy_pixels(data)
            said = tuple(meta.get(k) for k in ("height", "width", "channels"))
            if shape != said:
                raise SampleError(f"sample {key!r}: the .npy holds shape {shape}, its .json says {said}")
        record[IMAGE] = ("bytes", [data])
    return record
