"""Netpbm: the text headers of PNM (P1-P6), PAM (P7) and PFM (Pf/PF), read as OpenCV reads them."""

from __future__ import annotations

import re

from prep.core.errors import EncodeError
from prep.formats.images.base import MAX_SIDE, TEXT_HEADER_LIMIT, WHITESPACE, ImageInfo, gray_or_rgb

_DIGITS = re.compile(rb"[0-9]{1,11}")
_LINE_END = re.compile(rb"[\r\n]")


def _pnm_number(data: bytes, pos: int) -> tuple[int, int]:
    """OpenCV's ReadNumber: skip whitespace and # comments, read digits, consume the byte after them."""
    while True:
        byte = data[pos]
        if 0x30 <= byte <= 0x39:
            break
        if byte == 0x23:  # comment to the end of the line
            found = _LINE_END.search(data, pos, TEXT_HEADER_LIMIT)
            if found is None:
                raise IndexError
            pos = found.end()
        elif byte in WHITESPACE:
            pos += 1
        else:
            raise EncodeError(f"corrupt pnm header: unexpected byte {byte:#04x} at {pos}")
        if pos > TEXT_HEADER_LIMIT:
            raise EncodeError("corrupt pnm header: too long")
    digits = _DIGITS.match(data, pos)
    value = int(digits.group())
    if value > MAX_SIDE or data[digits.end() : digits.end() + 1].isdigit():
        raise EncodeError(f"pnm header gives an absurd number at byte {pos}")
    return value, digits.end() + 1


def read_pnm(data: bytes) -> ImageInfo:
    kind = data[1:2]
    width, pos = _pnm_number(data, 2)
    height, pos = _pnm_number(data, pos)
    if kind not in b"14":
        maxval, pos = _pnm_number(data, pos)
        if not 0 < maxval < 65536:
            raise EncodeError(f"corrupt pnm: maxval {maxval}")
    channels = 3 if kind in b"36" else 1
    return ImageInfo("pnm", height, width, channels, gray_or_rgb(channels))


def read_pam(data: bytes) -> ImageInfo:
    if data[2] not in b"\r\n":
        raise EncodeError("corrupt pam: no line break after P7")
    fields: dict[bytes, bytes] = {}
    for line in _LINE_END.split(data[3:TEXT_HEADER_LIMIT]):
        words = line.strip(WHITESPACE).split(None, 1)
        if not words or words[0].startswith(b"#"):
            continue
        if words[0] == b"ENDHDR":
            break
        if words[0] in fields and words[0] != b"TUPLTYPE":
            raise EncodeError(f"corrupt pam: {words[0].decode('latin-1')} given twice")
        fields[words[0]] = words[1].strip(WHITESPACE) if len(words) > 1 else b""
    else:
        raise EncodeError("truncated pam header: no ENDHDR")
    numbers = [re.fullmatch(rb"-?[0-9]{1,11}", fields.get(key, b"")) for key in (b"WIDTH", b"HEIGHT", b"DEPTH")]
    if not all(numbers):
        raise EncodeError("corrupt pam: WIDTH, HEIGHT and DEPTH must be integers")
    width, height, depth = (int(number.group()) for number in numbers)
    if not 1 <= depth <= 4:
        raise EncodeError(f"pam: DEPTH {depth} is not supported")
    return ImageInfo("pam", height, width, depth, gray_or_rgb(depth))


def read_pfm(data: bytes) -> ImageInfo:
    if data[2] != 0x0A:  # OpenCV wants exactly one newline here
        raise EncodeError("corrupt pfm: no newline after Pf/PF")
    # Width and height are whitespace-ended tokens read with atoi: "53 37", not "53  37".
    tokens = re.match(rb"([^ \t\n\r\x0b\x0c]{0,64})[ \t\n\r\x0b\x0c]([^ \t\n\r\x0b\x0c]{0,64})[ \t\n\r\x0b\x0c]", data[3:200])
    if tokens is None:
        raise IndexError
    width, height = (_atoi(token) for token in tokens.groups())
    channels = 3 if data[1:2] == b"F" else 1
    return ImageInfo("pfm", height, width, channels, gray_or_rgb(channels))


def _atoi(token: bytes) -> int:
    number = re.match(rb"[+-]?[0-9]{1,11}", token)
    return int(number.group()) if number else 0
