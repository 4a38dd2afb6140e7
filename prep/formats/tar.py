"""POSIX ustar archives, byte by byte: member headers prep writes itself (nothing from the clock, the user or
the machine: mtime 0, uid/gid 0, no user or group name, mode 0644) and a reader of regular-file members.

Python's tarfile and GNU tar read these; prep does not use tarfile to write, because it stamps the current
time and user into every header. Each header is what `tarfile.TarInfo.tobuf(format=USTAR_FORMAT)` gives
for the same name and size (the tests compare them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from prep.core.errors import PrepError

BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)  # two zero blocks end an archive
NAME_BYTES = 100  # ustar's name field; prep never uses the 155-byte prefix (wids reads the name field only)
MAX_SIZE = 8**11 - 1  # 11 octal digits: 8 GiB - 1, the largest size a plain ustar header holds
_MAGIC = b"ustar\x0000"  # POSIX ustar magic and version
_REGULAR = (b"0", b"\x00")  # a regular file: "0", or NUL in pre-POSIX archives


class TarError(PrepError):
    """A tar archive whose headers or framing are wrong, or a member prep cannot write."""


def _octal(value: int, width: int) -> bytes:
    """`width - 1` zero-padded octal digits and a NUL, as tarfile writes numeric fields."""
    return b"%0*o\x00" % (width - 1, value)


def header(name: str, size: int) -> bytes:
    """The 512-byte ustar header of a regular file `name` of `size` bytes: mode 0644, owner 0:0 without
    names, mtime 0. TarError when the name does not fit the 100-byte name field or the size 11 octal digits."""
    encoded = name.encode("utf-8")
    if not encoded or len(encoded) > NAME_BYTES or b"\x00" in encoded:
        raise TarError(f"tar member name {name!r}: must be 1 to {NAME_BYTES} bytes (ustar's name field), without NUL")
    if not 0 <= size <= MAX_SIZE:
        raise TarError(f"tar member {name!r}: {size} bytes is more than a ustar header holds ({MAX_SIZE})")
    block = bytearray(BLOCK)
    block[0 : len(encoded)] = encoded
    block[100:108] = _octal(0o644, 8)  # mode
    block[108:116] = _octal(0, 8)  # uid
    block[116:124] = _octal(0, 8)  # gid
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(0, 12)  # mtime
    block[148:156] = b" " * 8  # the checksum is summed with its own field as spaces
    block[156:157] = b"0"  # typeflag: regular file
    block[257:265] = _MAGIC
    # devmajor, devminor, prefix: left NUL, as tarfile leaves them for a regular file
    block[148:156] = b"%06o\x00 " % sum(block)  # six digits, NUL, space: as tarfile and GNU tar write it
    return bytes(block)


def padding(size: int) -> bytes:
    """Zero bytes that fill a member's data up to the next 512-byte block."""
    return bytes(-size % BLOCK)


def member(name: str, data: bytes) -> bytes:
    """A whole member: header, data, padding."""
    return header(name, len(data)) + data + padding(len(data))


def _number(field: bytes, what: str) -> int:
    digits = field.split(b"\x00", 1)[0].strip(b" ")
    if not digits or any(c not in b"01234567" for c in digits):
        raise TarError(f"{what} field {bytes(field)!r} is not an octal number")
    return int(digits, 8)


def is_header(block: bytes) -> bool:
    """Whether 512 bytes are a ustar (POSIX or GNU) header whose checksum holds: what a stray tar starts with."""
    if len(block) != BLOCK or block[257:262] != b"ustar":
        return False
    try:
        stored = _number(block[148:156], "checksum")
    except TarError:
        return False
    blank = block[:148] + b" " * 8 + block[156:]
    return stored == sum(blank)


def parse_header(block: bytes, where: str) -> tuple[str, int]:
    """(name, size) of a regular-file header; TarError naming `where` for anything else."""
    if block[257:265] != _MAGIC and block[257:265] != b"ustar  \x00":
        raise TarError(f"{where}: not a ustar header (magic {bytes(block[257:265])!r})")
    if not is_header(block):
        raise TarError(f"{where}: header checksum does not match")
    kind = block[156:157]
    raw_name = block[0:100].split(b"\x00", 1)[0]
    prefix = block[345:500].split(b"\x00", 1)[0] if block[257:265] == _MAGIC else b""
    full = (prefix + b"/" + raw_name) if prefix else raw_name
    name = full.decode("utf-8", "surrogateescape")
    if kind not in _REGULAR:
        raise TarError(f"{where}: member {name!r} has type {kind!r}; prep's archives hold only regular files")
    return name, _number(block[124:136], f"{name!r}: size")


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    parts, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_members(stream: BinaryIO, name: str = "<stream>") -> Iterator[tuple[int, str, bytes]]:
    """(offset of its header, member name, data) of every member in order, up to the end-of-archive blocks.

    TarError names the archive, member and byte offset when a header is damaged, the data is cut short,
    or the archive ends without its two zero blocks (a truncated file).
    """
    offset = 0
    index = 0
    while True:
        where = f"{name}: member {index} at byte {offset}"
        try:
            block = _read_exact(stream, BLOCK)
            if not block:
                raise TarError(f"{where}: the archive ends without its end-of-archive blocks (truncated?)")
            if len(block) < BLOCK:
                raise TarError(f"{where}: {len(block)} bytes, a header is {BLOCK} (truncated?)")
            if block == bytes(BLOCK):
                second = _read_exact(stream, BLOCK)
                if second != bytes(BLOCK):
                    raise TarError(f"{where}: one zero block, then not a second one: not a clean end of archive")
                return
            member_name, size = parse_header(block, where)
            data = _read_exact(stream, size)
            pad = _read_exact(stream, -size % BLOCK)
        except OSError as err:
            raise TarError(f"{where}: cannot read: {err.strerror or err}") from None
        if len(data) < size or len(pad) < -size % BLOCK:
            raise TarError(f"{where}: {member_name!r} is cut short ({len(data)} of {size} bytes; truncated?)")
        yield offset, member_name, data
        offset += BLOCK + size + len(pad)
        index += 1
