"""Image format, size and channels read from file headers by magic bytes, without decoding pixels.

Every format this OpenCV build decodes has a reader here, so a decoder is only ever handed an image whose
size was checked first (a few bytes can declare 30000x30000). Each reader follows what OpenCV's own
decoder reads, so the size and channels it gives are the ones `cv2.imdecode(..., IMREAD_UNCHANGED)` returns.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from prep.core.errors import EncodeError

MAX_SIDE = 2**31 - 1  # decoders keep sizes in a C int: a larger header value is corrupt, not an image

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JP2_MAGIC = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_J2K_MAGIC = b"\xff\x4f\xff\x51"  # SOC then SIZ
_SPACE = b" \t\n\r\x0b\x0c"  # C's isspace, which OpenCV's text-header readers use
# Formats with a known magic but no decoder in this build (or no size in a header): named in the message.
_UNREAD_MAGIC = {b"v/1\x01": "exr", b"qoif": "qoi", b"\xff\x0a": "jxl", b"\x00\x00\x00\x0cJXL ": "jxl"}


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "jpeg", "png", "gif", "bmp", "webp", "tiff", "jp2", "j2k", "pnm", "pam", "pfm", "ras", "hdr", "avif"
    height: int
    width: int
    channels: int  # as OpenCV decodes it unchanged: CMYK JPEGs give 3, gray+alpha PNGs 4
    colorspace: str = ""  # "CMYK" for CMYK JPEG/TIFF, otherwise "RGB" or "GRAY" where known
    # EXIF orientation of a JPEG (1..8, 1 = upright; height/width are still the stored pixels'). Other formats
    # give 1: OpenCV's TIFF decoder turns its pixels itself, and the header reader already swaps those sizes.
    orientation: int = 1


def sniff_format(data: bytes) -> str | None:
    """The real format by magic bytes (ImageNet has a PNG named .JPEG), or None when unknown."""
    head = bytes(data[:16])
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == _PNG_MAGIC:
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:12] == _JP2_MAGIC:
        return "jp2"
    if head[:4] == _J2K_MAGIC:
        return "j2k"
    if len(head) >= 3 and head[0] == 0x50 and head[2] in _SPACE:  # "P" + kind + whitespace, as OpenCV checks
        kind = head[1:2]
        if kind in b"123456":
            return "pnm"
        if kind == b"7":
            return "pam"
        if kind in (b"f", b"F"):
            return "pfm"
    if head[:4] == b"\x59\xa6\x6a\x95":
        return "ras"
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        return "hdr"
    if head[4:8] == b"ftyp" and _is_avif(data):
        return "avif"
    for magic, name in _UNREAD_MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def read_header(data: bytes) -> ImageInfo:
    """Format and shape from the header; raises EncodeError with the reason when it cannot be read."""
    fmt = sniff_format(data)
    if fmt is None:
        if not data:
            raise EncodeError("empty file")
        raise EncodeError(f"not a known image format (starts with {bytes(data[:8]).hex()})")
    reader = _READERS.get(fmt)
    if reader is None:
        raise EncodeError(f"{fmt}: size cannot be read before decoding")
    if not isinstance(data, bytes):
        data = bytes(data)
    try:
        info = reader(data)
    except (struct.error, IndexError, ValueError, OverflowError):  # a field or offset beyond the end of the data
        raise EncodeError(f"truncated {fmt} header") from None
    if info.height <= 0 or info.width <= 0:
        raise EncodeError(f"{fmt} header gives an empty size {info.width}x{info.height}")
    if info.height > MAX_SIDE or info.width > MAX_SIDE:
        raise EncodeError(f"{fmt} header gives an absurd size {info.width}x{info.height}")
    return info


def check_complete(data: bytes, fmt: str) -> None:
    """Raises EncodeError when a JPEG, PNG, GIF or WebP file is cut short; other formats are not checked.

    Bytes after the end of the image (padding, an appended second JPEG, maker data) are fine: decoders stop there.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    try:
        reason = _INCOMPLETE[fmt](data) if fmt in _INCOMPLETE else None
    except (struct.error, IndexError, OverflowError):
        reason = f"truncated {fmt}: the file ends inside a header"
    if reason:
        raise EncodeError(reason)


def is_complete(data: bytes, fmt: str) -> bool:
    try:
        check_complete(data, fmt)
    except EncodeError:
        return False
    return True


def _space(channels: int) -> str:
    return "GRAY" if channels == 1 else "RGB"


# ---- JPEG -------------------------------------------------------------------------------------------------

# SOFn markers carry the frame header; C4 (DHT), C8 (reserved) and CC (DAC) share the range but are not frames.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# A marker where the walk may be: FF then anything but a stuffed 00, a restart marker or another FF (fill).
# Entropy-coded data can hold no other FF pair, so this finds a scan's end at C speed.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_TRUNCATED = "truncated jpeg: the data ends before its EOI marker"


def _jpeg(data: bytes) -> ImageInfo:
    pos = 2
    end = len(data)
    orientation = 0  # 0 until an Exif APP1 segment was read: the first one counts, as for libexif and Pillow
    while pos < end:
        if data[pos] != 0xFF:
            raise EncodeError(f"corrupt JPEG: expected a marker at byte {pos}")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            raise EncodeError("corrupt JPEG: no frame header before the image data")
        (length,) = struct.unpack_from(">H", data, pos)
        if marker in _JPEG_SOF:
            _precision, height, width, components = struct.unpack_from(">BHHB", data, pos + 2)
            if height == 0:
                raise EncodeError("JPEG gives its height in a DNL marker; not read without decoding")
            # OpenCV (like TensorFlow) converts CMYK/YCCK to 3 channels; the colorspace still says CMYK.
            space = {1: "GRAY", 3: "RGB", 4: "CMYK"}.get(components, "")
            return ImageInfo("jpeg", height, width, 1 if components == 1 else 3, space, orientation or 1)
        if length < 2:
            raise EncodeError(f"corrupt JPEG: segment length {length} at byte {pos}")
        if marker == 0xE1 and not orientation and data[pos + 2 : pos + 8] == b"Exif\x00\x00":
            orientation = _exif_orientation(data, pos + 8, min(pos + length, end))
        pos += length
    raise EncodeError("truncated JPEG header")


_EXIF_ORIENTATION = 274
_EXIF_INTEGERS = {3: "H", 4: "I"}  # SHORT as the standard says; LONG as some writers put it


def _exif_orientation(data: bytes, start: int, stop: int) -> int:
    """The orientation tag of IFD0 in the TIFF structure at data[start:stop] (an Exif APP1 payload).

    Any broken, truncated or out-of-range EXIF gives 1 (upright): a bad tag never costs the image.
    """
    tiff = data[start:stop]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    magic, ifd = struct.unpack_from(order + "HI", tiff, 2)
    if magic != 42 or ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for pos in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
        tag, kind, number = struct.unpack_from(order + "HHI", tiff, pos)
        if tag == _EXIF_ORIENTATION:
            if kind not in _EXIF_INTEGERS or number < 1:
                return 1
            (value,) = struct.unpack_from(order + _EXIF_INTEGERS[kind], tiff, pos + 8)
            return value if 1 <= value <= 8 else 1
    return 1


def _jpeg_missing_eoi(data: bytes) -> str | None:
    """Walks markers to the EOI that ends the image: segments by their length (so an EXIF thumbnail's EOI inside
    APP1 is skipped), entropy-coded data by a regex search, through every scan of a progressive file."""
    end = len(data)
    pos = 2
    frame = components = 0
    first_scan = True
    while True:
        found = _JPEG_MARKER.search(data, pos)
        if found is None:
            return _JPEG_TRUNCATED
        marker = data[found.end() - 1]
        pos = found.end()
        if marker == 0xD9:
            return None
        if marker == 0x01:  # TEM: no length
            continue
        if pos + 2 > end:
            return _JPEG_TRUNCATED
        length = data[pos] << 8 | data[pos + 1]
        if length < 2:
            return f"corrupt jpeg: marker ff{marker:02x} at byte {pos - 2} has length {length}"
        if marker in _JPEG_SOF and pos + 8 <= end:
            frame, components = marker, data[pos + 7]
        if marker == 0xDA and first_scan:
            first_scan = False
            # Fast path: a sequential frame whose first scan holds every component has no other scan, and its
            # entropy data cannot contain FF D9; so a file ending (before zero padding) with FF D9 after this
            # scan header has its EOI there.
            if frame in (0xC0, 0xC1) and pos + 2 < end and data[pos + 2] == components:
                tail = data[-4096:]
                stop = end - (len(tail) - len(tail.rstrip(b"\x00")))
                if stop - 2 >= pos + length and data[stop - 2 : stop] == b"\xff\xd9":
                    return None
        pos += length
        if pos > end:
            return _JPEG_TRUNCATED


# ---- PNG --------------------------------------------------------------------------------------------------


def _png_chunks(data: bytes):
    """(type, data start, data end) of each chunk in order; stops at IEND or where the file ends."""
    pos = 8
    end = len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        if length > MAX_SIDE:  # the PNG spec's limit; a larger one is corrupt
            return
        yield kind, pos + 8, pos + 8 + length
        if kind == b"IEND":
            return
        pos += 12 + length


def _png(data: bytes) -> ImageInfo:
    if data[12:16] != b"IHDR":
        raise EncodeError("corrupt PNG: first chunk is not IHDR")
    width, height, _depth, color_type = struct.unpack_from(">IIBB", data, 16)
    if color_type not in (0, 2, 3, 4, 6):
        raise EncodeError(f"corrupt PNG: colour type {color_type}")
    transparency = False
    if color_type in (2, 3):  # a tRNS chunk turns RGB and palette images into BGRA in OpenCV (not gray ones)
        colours = 0
        for kind, start, stop in _png_chunks(data):
            if kind == b"PLTE":
                colours = (stop - start) // 3
            if kind == b"IDAT":
                break
            if kind == b"tRNS":  # libpng drops one with a bad CRC or a length that does not fit
                length = stop - start
                fits = length == 6 if color_type == 2 else 0 < length <= min(colours, 256)
                transparency = fits and data[stop : stop + 4] == struct.pack(">I", zlib.crc32(data[start - 4 : stop]))
                break
    # OpenCV has no 2-channel output: gray+alpha decodes to BGRA.
    channels = 1 if color_type == 0 else 4 if color_type in (4, 6) or transparency else 3
    return ImageInfo("png", height, width, channels, _space(channels))


def _png_missing_iend(data: bytes) -> str | None:
    for kind, _start, stop in _png_chunks(data):
        if kind == b"IEND" and stop + 4 <= len(data):  # with its CRC
            return None
    return "truncated png: the chunks end before the IEND chunk"


# ---- GIF ----------------------------------------------------------------------------------------------------


def _gif_walk(data: bytes) -> tuple[bool, bool]:
    """(transparent, complete): OpenCV decodes BGRA when the last graphic control extension in the file has a
    transparent colour; the file is complete when its blocks reach the trailer (OpenCV refuses it otherwise)."""
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    end = len(data)
    transparent = False
    while pos < end:
        block = data[pos]
        pos += 1
        if block == 0x3B:
            return transparent, True
        if block == 0x21:  # extension: label, then sub-blocks
            if pos + 3 <= end and data[pos] == 0xF9 and data[pos + 1] == 4:
                transparent = bool(data[pos + 2] & 1)
            pos += 1
        elif block == 0x2C:  # image: descriptor, optional local colour table, LZW code size, sub-blocks
            if pos + 9 > end:
                break
            local = data[pos + 8]
            pos += 9 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
        else:
            break
        while pos < end and data[pos]:  # sub-blocks, each led by its length, up to a zero length
            pos += data[pos] + 1
        pos += 1
    return transparent, False


def _gif(data: bytes) -> ImageInfo:
    width, height = struct.unpack_from("<HH", data, 6)  # the logical screen: OpenCV's output size
    transparent, _complete = _gif_walk(data)
    return ImageInfo("gif", height, width, 4 if transparent else 3, "RGB")


def _gif_missing_trailer(data: bytes) -> str | None:
    return None if _gif_walk(data)[1] else "truncated or corrupt gif: its blocks do not reach the trailer"


# ---- BMP, WebP, Sun raster ---------------------------------------------------------------------------------


def _bmp(data: bytes) -> ImageInfo:
    (size,) = struct.unpack_from("<i", data, 14)
    if size == 12:  # OS/2 core header; OpenCV decodes these as gray
        width, height, _planes, bits = struct.unpack_from("<HHHH", data, 18)
        return ImageInfo("bmp", height, width, 1, "GRAY")
    if size < 36:
        raise EncodeError(f"corrupt BMP: header size {size}")
    width, height, _planes, bits, compression = struct.unpack_from("<iiHHI", data, 18)
    if bits <= 8:  # palette: gray unless one of its first 2**bits entries has colour
        (used,) = struct.unpack_from("<I", data, 46)
        if used > 256:
            raise EncodeError(f"corrupt BMP: {used} palette colours")
        start = 14 + size
        palette = data[start : start + 4 * min(used or 1 << bits, 1 << bits)]
        palette = palette[: len(palette) // 4 * 4]
        blue, green, red = palette[0::4], palette[1::4], palette[2::4]
        channels = 3 if blue != green or blue != red else 1
    else:
        channels = 4 if bits == 32 and compression != 0 else 3  # alpha only from BITFIELDS masks
    return ImageInfo("bmp", abs(height), width, channels, _space(channels))


def _webp(data: bytes) -> ImageInfo:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise EncodeError("corrupt WebP: no VP8 start code")
        width, height = struct.unpack_from("<HH", data, 26)
        return ImageInfo("webp", height & 0x3FFF, width & 0x3FFF, 3, "RGB")
    if chunk == b"VP8L":
        (bits,) = struct.unpack_from("<I", data, 21)
        alpha = (bits >> 28) & 1
        return ImageInfo("webp", ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1, 4 if alpha else 3, "RGB")
    if chunk == b"VP8X":
        if len(data) < 30:
            raise IndexError
        flags = data[20]
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageInfo("webp", height, width, 4 if flags & 0x10 else 3, "RGB")
    raise EncodeError(f"corrupt WebP: unknown chunk {chunk!r}")


def _webp_missing_data(data: bytes) -> str | None:
    (size,) = struct.unpack_from("<I", data, 4)
    if 8 + size > len(data):  # libwebp refuses a RIFF chunk longer than the file
        return f"truncated webp: the RIFF header gives {8 + size} bytes, the file has {len(data)}"
    return None


def _ras(data: bytes) -> ImageInfo:
    width, height, depth, _length, _kind, map_type, map_length = struct.unpack_from(">iiiiiii", data, 4)
    channels = 3 if depth > 8 else 1
    if depth <= 8 and map_type == 1 and map_length > 0:  # a colour map: colour unless every entry is gray
        third = map_length // 3
        red, green, blue = data[32 : 32 + third], data[32 + third : 32 + 2 * third], data[32 + 2 * third : 32 + 3 * third]
        channels = 3 if red != green or green != blue else 1
    return ImageInfo("ras", height, width, channels, _space(channels))


# ---- TIFF -------------------------------------------------------------------------------------------------

_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q", 6: "b", 8: "h", 9: "i", 17: "q"}  # integer field types
_TIFF_WANTED = {256: "width", 257: "height", 258: "bits", 262: "photometric", 274: "orientation", 277: "samples", 320: "colormap"}


def _tiff(data: bytes) -> ImageInfo:
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    if big:
        offset_size, _zero, ifd = struct.unpack_from(order + "HHQ", data, 4)
        if offset_size != 8:
            raise EncodeError(f"corrupt BigTIFF: offset size {offset_size}")
        (count,) = struct.unpack_from(order + "Q", data, ifd)
        entry, first, value_size = order + "HHQ", ifd + 8, 8
        if count > 4096:  # libtiff's own sanity limit for a BigTIFF directory
            raise EncodeError(f"corrupt BigTIFF: {count} directory entries")
    else:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
        entry, first, value_size = order + "HHI", ifd + 2, 4
    step = struct.calcsize(entry) + value_size
    fields: dict[str, int] = {}
    for pos in range(first, first + count * step, step):
        tag, kind, number = struct.unpack_from(entry, data, pos)
        name = _TIFF_WANTED.get(tag)
        if name is None or kind not in _TIFF_TYPES or number < 1:
            continue
        code = order + _TIFF_TYPES[kind]
        size = struct.calcsize(code)
        at = pos + step - value_size  # the value itself when it fits, otherwise the offset of the values
        if size * number > value_size:
            (at,) = struct.unpack_from(order + ("Q" if big else "I"), data, at)
        (value,) = struct.unpack_from(code, data, at)
        if name in ("width", "height") and (number != 1 or fields.get(name, value) != value):
            raise EncodeError(f"corrupt TIFF: {number} or conflicting {name} values")
        fields.setdefault(name, number if name == "colormap" else value)
    if "width" not in fields or "height" not in fields:
        raise EncodeError("corrupt TIFF: the first directory has no ImageWidth/ImageLength")
    width, height = fields["width"], fields["height"]
    channels = _tiff_channels(fields)
    if fields.get("orientation", 1) in (5, 6, 7, 8):  # OpenCV turns these a quarter: width and height swap
        width, height = height, width
    return ImageInfo("tiff", height, width, channels, "CMYK" if fields.get("photometric") == 5 else _space(channels))


def _tiff_channels(fields: dict[str, int]) -> int:
    """The channels OpenCV's TIFF decoder gives (its readHeader, case by case)."""
    bits = fields.get("bits", 1)
    libtiff_samples = fields.get("samples", 1)  # libtiff's default; OpenCV's own guess below differs
    photometric = fields.get("photometric", 2 if libtiff_samples >= 3 else 1)  # libtiff's guess when missing
    colormap = bits <= 16 and fields.get("colormap") == 3 << bits  # libtiff ignores a ColorMap of another length
    if photometric == 3 and not colormap and bits >= 8:  # libtiff's fix for a palette without colours
        photometric = 2 if libtiff_samples == 3 else 1
    gray = photometric in (0, 1)
    samples = fields.get("samples", 1 if gray else 3)
    if samples == 3 and photometric == 32845:  # LogLuv
        return 3
    if bits > 8 and (photometric > 2 or samples not in (1, 3, 4)):
        bits = 8
    if not 1 <= samples <= 4:
        raise EncodeError(f"tiff: {samples} samples per pixel is not supported")
    if bits == 4 and photometric != 3:
        raise EncodeError("tiff: 4 bits per sample only for palette images")
    if bits not in (1, 4, 8, 10, 12, 14, 16, 32, 64):
        raise EncodeError(f"tiff: {bits} bits per sample is not supported")
    if photometric == 3 and bits in (4, 8):
        return 3
    return 1 if gray and bits <= 16 else samples


# ---- JPEG 2000 ----------------------------------------------------------------------------------------------


def _boxes(data: bytes, pos: int, end: int):
    """(type, payload start, payload end) of ISO/JP2 boxes in data[pos:end]; a box cut short ends at `end`."""
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:  # to the end of the file
            size = end - pos
        if size < header:
            return
        yield kind, pos + header, min(pos + size, end)
        pos += size


def _siz(data: bytes, pos: int, fmt: str) -> ImageInfo:
    """The codestream's SIZ segment: the decoder's size is its image area, its channels the components."""
    if data[pos : pos + 4] != _J2K_MAGIC:
        raise EncodeError(f"corrupt {fmt}: no SOC/SIZ markers where the codestream starts")
    x1, y1, x0, y0 = struct.unpack_from(">IIII", data, pos + 8)
    (components,) = struct.unpack_from(">H", data, pos + 40)
    return ImageInfo(fmt, y1 - y0, x1 - x0, components, _space(components))


def _jp2(data: bytes) -> ImageInfo:
    header = None
    for kind, start, stop in _boxes(data, 0, len(data)):
        if kind == b"jp2c":  # OpenJPEG takes the size from the codestream, whatever ihdr says
            return _siz(data, start, "jp2")
        if kind == b"jp2h":
            for child, cstart, _cstop in _boxes(data, start, stop):
                if child == b"ihdr":
                    height, width, components = struct.unpack_from(">IIH", data, cstart)
                    header = ImageInfo("jp2", height, width, components, _space(components))
    if header is None:
        raise EncodeError("truncated jp2 header")
    return header  # no codestream: not decodable, but its declared size still goes through the checks


def _j2k(data: bytes) -> ImageInfo:
    return _siz(data, 0, "j2k")


# ---- AVIF (ISO BMFF) -----------------------------------------------------------------------------------------


# The item properties libavif reads; an item with another one marked essential is skipped.
_AVIF_PROPERTIES = {b"ispe", b"auxC", b"colr", b"av1C", b"pasp", b"clap", b"irot", b"imir", b"pixi", b"a1op", b"lsel", b"a1lx", b"clli"}


def _is_avif(data: bytes) -> bool:
    """libavif's check: the first box is ftyp and lists "avif" or "avis" as major or compatible brand."""
    (size,) = struct.unpack_from(">I", data, 0)
    brands = bytes(data[8 : min(size, len(data), 4096)])
    return any(brands[i : i + 4] in (b"avif", b"avis") for i in range(0, len(brands) - 3, 4) if i != 4)


def _children(data: bytes, start: int, stop: int, *needed: bytes) -> dict[bytes, tuple[int, int]]:
    """The first box of each type in data[start:stop]; EncodeError naming a needed one that is missing."""
    found: dict[bytes, tuple[int, int]] = {}
    for kind, s, e in _boxes(data, start, stop):
        found.setdefault(kind, (s, e))
    missing = [kind.decode("latin-1") for kind in needed if kind not in found]
    if missing:
        raise EncodeError(f"truncated or corrupt avif: no {'/'.join(missing)} box")
    return found


def _avif(data: bytes) -> ImageInfo:
    top = _children(data, 0, len(data))
    if b"moov" in top:  # libavif decodes the track, whose size only its sample headers give
        raise EncodeError("avif image sequence: size cannot be read before decoding")
    start, stop = _children(data, 0, len(data), b"meta")[b"meta"]
    meta = _children(data, start + 4, stop, b"pitm", b"iprp")  # meta is a full box: 4 bytes version and flags
    pitm = meta[b"pitm"][0]
    (primary,) = struct.unpack_from(">I" if data[pitm] else ">H", data, pitm + 4)
    iprp = _children(data, *meta[b"iprp"], b"ipco", b"ipma")
    properties = list(_boxes(data, *iprp[b"ipco"]))
    associations = _ipma(data, *iprp[b"ipma"])

    def props(item: int) -> dict[bytes, int] | None:
        """Where each property of the item starts; None when libavif skips the item for an essential property
        it does not know."""
        found = {}
        for index, essential in associations.get(item, ()):
            if 0 < index <= len(properties):
                kind, start, _stop = properties[index - 1]
                if essential and kind not in _AVIF_PROPERTIES:
                    return None
                found.setdefault(kind, start)
        return found

    own = props(primary) or {}
    if b"ispe" not in own:
        raise EncodeError("corrupt avif: the primary image has no ispe size")
    width, height = struct.unpack_from(">II", data, own[b"ispe"] + 4)
    mono = b"av1C" in own and bool(data[own[b"av1C"] + 2] & 0x10)
    channels = (1 if mono else 3) + _avif_has_alpha(data, meta, primary, props)
    return ImageInfo("avif", height, width, channels, _space(channels))


def _ipma(data: bytes, start: int, stop: int) -> dict[int, list[tuple[int, bool]]]:
    """item -> [(1-based property index, essential)]"""
    version, flags = data[start], data[start + 3]
    (count,) = struct.unpack_from(">I", data, start + 4)
    pos = start + 8
    found: dict[int, list[int]] = {}
    for _ in range(min(count, stop - pos)):
        item = struct.unpack_from(">I" if version else ">H", data, pos)[0]
        pos += 4 if version else 2
        number = data[pos]
        pos += 1
        wide = flags & 1
        values = struct.unpack_from((">%dH" if wide else ">%dB") % number, data, pos)
        top = 0x8000 if wide else 0x80  # the essential bit; the rest is the index
        found.setdefault(item, [(value & (top - 1), bool(value & top)) for value in values])
        pos += number * (1 + wide)
    return found


def _iloc_items(data: bytes, start: int, stop: int) -> set[int]:
    """The items that have data (iloc extents of more than 0 bytes); libavif ignores an alpha item without."""
    version = data[start]
    sizes = data[start + 4] << 8 | data[start + 5]  # offset, length, base offset and index sizes, a nibble each
    offset_size, length_size, base_size = sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15
    index_size = sizes & 15 if version else 0
    id_code = ">I" if version == 2 else ">H"
    (count,) = struct.unpack_from(id_code, data, start + 6)
    pos = start + 6 + struct.calcsize(id_code)
    items = set()
    for _ in range(min(count, stop - pos)):
        (item,) = struct.unpack_from(id_code, data, pos)
        pos += struct.calcsize(id_code) + (2 if version else 0) + 2 + base_size  # method, data reference, base
        (extents,) = struct.unpack_from(">H", data, pos)
        pos += 2
        size = 0
        for _ in range(extents):
            pos += index_size + offset_size
            size += int.from_bytes(data[pos : pos + length_size], "big")
            pos += length_size
        if size:
            items.add(item)
    return items


def _iinf_images(data: bytes, start: int, stop: int) -> set[int]:
    """The items that iinf declares as AV1 images (or grids of them); libavif ignores others."""
    pos = start + (6 if data[start] == 0 else 8)  # entry count: 16 bits in version 0, else 32
    images = set()
    for kind, entry, _end in _boxes(data, pos, stop):
        version = data[entry]
        if kind == b"infe" and version >= 2:
            item_code = ">I" if version == 3 else ">H"
            (item,) = struct.unpack_from(item_code, data, entry + 4)
            kind_at = entry + 4 + struct.calcsize(item_code) + 2  # after the protection index
            if data[kind_at : kind_at + 4] in (b"av01", b"grid"):
                images.add(item)
    return images


def _avif_has_alpha(data: bytes, meta: dict, primary: int, props) -> bool:
    """libavif's alphaPresent: an auxiliary (auxl) AV1 item of the primary image, with data, whose auxC says alpha."""
    if b"iref" not in meta or b"iloc" not in meta or b"iinf" not in meta:
        return False
    located = _iloc_items(data, *meta[b"iloc"]) & _iinf_images(data, *meta[b"iinf"])
    start, stop = meta[b"iref"]
    wide = data[start] != 0
    for kind, pos, _end in _boxes(data, start + 4, stop):
        if kind != b"auxl":
            continue
        source, count = struct.unpack_from(">IH" if wide else ">HH", data, pos)
        targets = struct.unpack_from((">%dI" if wide else ">%dH") % count, data, pos + (6 if wide else 4))
        aux = (props(source) or {}).get(b"auxC")
        if primary in targets and source in located and aux is not None:
            urn = data[aux + 4 : aux + 64].split(b"\x00")[0]
            if urn in (b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha", b"urn:mpeg:hevc:2015:auxid:1"):
                return True
    return False


# ---- Netpbm (PNM, PAM, PFM) and Radiance HDR: text headers ---------------------------------------------------

_TEXT_HEADER_LIMIT = 65536  # real text headers are a few lines; this bounds the walk over a junk file
_DIGITS = re.compile(rb"[0-9]{1,11}")
_LINE_END = re.compile(rb"[\r\n]")


def _pnm_number(data: bytes, pos: int) -> tuple[int, int]:
    """OpenCV's ReadNumber: skip whitespace and # comments, read digits, consume the byte after them."""
    while True:
        byte = data[pos]
        if 0x30 <= byte <= 0x39:
            break
        if byte == 0x23:  # comment to the end of the line
            found = _LINE_END.search(data, pos, _TEXT_HEADER_LIMIT)
            if found is None:
                raise IndexError
            pos = found.end()
        elif byte in _SPACE:
            pos += 1
        else:
            raise EncodeError(f"corrupt pnm header: unexpected byte {byte:#04x} at {pos}")
        if pos > _TEXT_HEADER_LIMIT:
            raise EncodeError("corrupt pnm header: too long")
    digits = _DIGITS.match(data, pos)
    value = int(digits.group())
    if value > MAX_SIDE or data[digits.end() : digits.end() + 1].isdigit():
        raise EncodeError(f"pnm header gives an absurd number at byte {pos}")
    return value, digits.end() + 1


def _pnm(data: bytes) -> ImageInfo:
    kind = data[1:2]
    width, pos = _pnm_number(data, 2)
    height, pos = _pnm_number(data, pos)
    if kind not in b"14":
        maxval, pos = _pnm_number(data, pos)
        if not 0 < maxval < 65536:
            raise EncodeError(f"corrupt pnm: maxval {maxval}")
    channels = 3 if kind in b"36" else 1
    return ImageInfo("pnm", height, width, channels, _space(channels))


def _pam(data: bytes) -> ImageInfo:
    if data[2] not in b"\r\n":
        raise EncodeError("corrupt pam: no line break after P7")
    fields: dict[bytes, bytes] = {}
    for line in _LINE_END.split(data[3:_TEXT_HEADER_LIMIT]):
        words = line.strip(_SPACE).split(None, 1)
        if not words or words[0].startswith(b"#"):
            continue
        if words[0] == b"ENDHDR":
            break
        if words[0] in fields and words[0] != b"TUPLTYPE":
            raise EncodeError(f"corrupt pam: {words[0].decode('latin-1')} given twice")
        fields[words[0]] = words[1].strip(_SPACE) if len(words) > 1 else b""
    else:
        raise EncodeError("truncated pam header: no ENDHDR")
    numbers = [re.fullmatch(rb"-?[0-9]{1,11}", fields.get(key, b"")) for key in (b"WIDTH", b"HEIGHT", b"DEPTH")]
    if not all(numbers):
        raise EncodeError("corrupt pam: WIDTH, HEIGHT and DEPTH must be integers")
    width, height, depth = (int(number.group()) for number in numbers)
    if not 1 <= depth <= 4:
        raise EncodeError(f"pam: DEPTH {depth} is not supported")
    return ImageInfo("pam", height, width, depth, _space(depth))


def _pfm(data: bytes) -> ImageInfo:
    if data[2] != 0x0A:  # OpenCV wants exactly one newline here
        raise EncodeError("corrupt pfm: no newline after Pf/PF")
    # Width and height are whitespace-ended tokens read with atoi: "53 37", not "53  37".
    tokens = re.match(rb"([^ \t\n\r\x0b\x0c]{0,64})[ \t\n\r\x0b\x0c]([^ \t\n\r\x0b\x0c]{0,64})[ \t\n\r\x0b\x0c]", data[3:200])
    if tokens is None:
        raise IndexError
    width, height = (_atoi(token) for token in tokens.groups())
    channels = 3 if data[1:2] == b"F" else 1
    return ImageInfo("pfm", height, width, channels, _space(channels))


def _atoi(token: bytes) -> int:
    number = re.match(rb"[+-]?[0-9]{1,11}", token)
    return int(number.group()) if number else 0


def _hdr(data: bytes) -> ImageInfo:
    """rgbe.cpp's RGBE_ReadHeader: lines as fgets reads them (at most 127 bytes), a FORMAT line, a blank line,
    then "-Y <height> +X <width>"; other orientations OpenCV does not read."""
    pos = 0
    has_format = False
    lines = 0
    while True:
        newline = data.find(b"\n", pos, pos + 127)
        stop = newline + 1 if newline >= 0 else min(pos + 127, len(data))
        if pos >= len(data) or stop > _TEXT_HEADER_LIMIT:
            raise EncodeError("hdr header has no blank line before the size")
        line = data[pos:stop].split(b"\x00")[0]
        pos = stop
        lines += 1
        if lines > 1 and line[:1] == b"\n":
            break
        has_format |= lines > 1 and line == b"FORMAT=32-bit_rle_rgbe\n"
    if not has_format:
        raise EncodeError("hdr header has no FORMAT=32-bit_rle_rgbe line")
    newline = data.find(b"\n", pos, pos + 127)
    line = data[pos : newline + 1 if newline >= 0 else pos + 127].split(b"\x00")[0]
    size = re.match(rb"-Y\s*([+-]?[0-9]{1,11})\s*\+X\s*([+-]?[0-9]{1,11})", line)
    if size is None:
        raise EncodeError("hdr: size cannot be read before decoding (only -Y height +X width is read)")
    return ImageInfo("hdr", int(size.group(1)), int(size.group(2)), 3, "RGB")


_READERS = {
    "jpeg": _jpeg, "png": _png, "gif": _gif, "bmp": _bmp, "webp": _webp, "tiff": _tiff, "jp2": _jp2, "j2k": _j2k,
    "pnm": _pnm, "pam": _pam, "pfm": _pfm, "ras": _ras, "hdr": _hdr, "avif": _avif,
}  # fmt: skip
HEADER_FORMATS = frozenset(_READERS)  # formats whose shape is read without decoding
_INCOMPLETE = {"jpeg": _jpeg_missing_eoi, "png": _png_missing_iend, "gif": _gif_missing_trailer, "webp": _webp_missing_data}
