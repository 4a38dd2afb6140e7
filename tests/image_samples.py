"""Image files of every format this OpenCV build decodes, made from the scikit-learn photos (OpenCV and Pillow
write them; a few are put together byte by byte where no writer makes that variant), plus crafted headers."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from conftest import crop
from PIL import Image

WIDTH, HEIGHT = 53, 37  # odd sizes whose bytes are easy to find and replace in a header


def small_rgb(photos) -> np.ndarray:
    return np.ascontiguousarray(crop(photos, 3)[:HEIGHT, :WIDTH])


def _cv(ext: str, pixels: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, pixels, list(params))
    assert ok, ext
    return buf.tobytes()


def _pil(rgb: np.ndarray, mode: str, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(out, format=fmt, **options)
    return out.getvalue()


def encoded_samples(rgb: np.ndarray) -> dict[str, bytes]:
    """name -> file bytes; every decodable format, gray/colour/alpha variants, still and animated."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    gray = np.ascontiguousarray(rgb[..., 1])
    bgra = np.dstack([bgr, gray[::-1]])  # an alpha plane that is not constant
    frames = [Image.fromarray(rgb), Image.fromarray(np.ascontiguousarray(rgb[::-1]))]
    samples = {
        "jpeg": _cv(".jpg", bgr), "jpeg-gray": _cv(".jpg", gray),
        "jpeg-progressive": _cv(".jpg", bgr, cv2.IMWRITE_JPEG_PROGRESSIVE, 1), "jpeg-cmyk": _pil(rgb, "CMYK", "JPEG"),
        "png": _cv(".png", bgr), "png-gray": _cv(".png", gray), "png-rgba": _cv(".png", bgra),
        "png-16bit": _cv(".png", gray.astype(np.uint16) * 257), "png-gray-alpha": _pil(rgb, "LA", "PNG"),
        "png-palette": _pil(rgb, "P", "PNG"), "png-palette-trns": _pil(rgb, "P", "PNG", transparency=0),
        "png-rgb-trns": _pil(rgb, "RGB", "PNG", transparency=(1, 2, 3)), "png-1bit": _pil(rgb, "1", "PNG"),
        "bmp": _cv(".bmp", bgr), "bmp-gray": _cv(".bmp", gray), "bmp-bgra": _cv(".bmp", bgra),
        "bmp-rgbx": _pil(rgb, "RGBA", "BMP"), "bmp-palette": _pil(rgb, "P", "BMP"), "bmp-1bit": _pil(rgb, "1", "BMP"),
        "webp": _cv(".webp", bgr, cv2.IMWRITE_WEBP_QUALITY, 80), "webp-lossless": _cv(".webp", bgr, cv2.IMWRITE_WEBP_QUALITY, 101),
        "webp-alpha": _cv(".webp", bgra, cv2.IMWRITE_WEBP_QUALITY, 80), "webp-alpha-lossless": _cv(".webp", bgra, cv2.IMWRITE_WEBP_QUALITY, 101),
        "gif": _cv(".gif", bgr), "gif-transparent": _cv(".gif", bgra), "gif-pil": _pil(rgb, "P", "GIF"),
        "tiff": _cv(".tiff", bgr), "tiff-gray": _cv(".tiff", gray), "tiff-bgra": _cv(".tiff", bgra),
        "tiff-16bit": _cv(".tiff", bgr.astype(np.uint16) * 257), "tiff-float": _cv(".tiff", bgr.astype(np.float32)),
        "tiff-cmyk": _pil(rgb, "CMYK", "TIFF"), "tiff-gray-alpha": _pil(rgb, "LA", "TIFF"), "tiff-1bit": _pil(rgb, "1", "TIFF"),
        "tiff-palette": _pil(rgb, "P", "TIFF"), "tiff-jpeg": _pil(rgb, "RGB", "TIFF", compression="jpeg"),
        "tiff-bigtiff": _pil(rgb, "RGB", "TIFF", big_tiff=True), "tiff-rotated": _pil(rgb, "RGB", "TIFF", tiffinfo={274: 6}),
        "tiff-big-endian": tiff_bytes(rgb, order=">"), "tiff-big-endian-bigtiff": tiff_bytes(gray, order=">", big=True),
        "tiff-long-sizes": tiff_bytes(rgb, long_sizes=True),
        "jp2": _cv(".jp2", bgr), "jp2-gray": _cv(".jp2", gray), "jp2-bgra": _cv(".jp2", bgra),
        "j2k": _pil(rgb, "RGB", "JPEG2000", no_jp2=True),
        "ppm": _cv(".ppm", bgr), "pgm": _cv(".pgm", gray), "pbm": _cv(".pbm", gray),
        "ppm-ascii": _cv(".ppm", bgr, cv2.IMWRITE_PXM_BINARY, 0), "pam": _cv(".pam", bgr), "pam-gray": _cv(".pam", gray),
        "pfm": _cv(".pfm", bgr), "pfm-gray": _cv(".pfm", gray),
        "ras": _cv(".ras", bgr), "ras-gray": _cv(".ras", gray),
        "hdr": _cv(".hdr", bgr), "avif": _cv(".avif", bgr), "avif-gray": _cv(".avif", gray), "avif-alpha": _cv(".avif", bgra),
    }  # fmt: skip
    for fmt in ("PNG", "WEBP", "GIF", "TIFF"):
        out = io.BytesIO()
        frames[0].save(out, format=fmt, save_all=True, append_images=frames[1:])
        samples[f"{fmt.lower()}-animated"] = out.getvalue()
    return samples


def tiff_bytes(pixels: np.ndarray, order: str = "<", big: bool = False, long_sizes: bool = False, declared=None) -> bytes:
    """An uncompressed one-strip TIFF, little or big endian, classic or BigTIFF, sizes as SHORT or LONG;
    declared=(width, height) puts another size in the header than the pixels have."""
    height, width = pixels.shape[:2]
    width, height = declared or (width, height)
    samples = 1 if pixels.ndim == 2 else pixels.shape[2]
    size_type = 4 if long_sizes else 3
    tags = [
        (256, size_type, [width]), (257, size_type, [height]), (258, 3, [8] * samples), (259, 3, [1]),
        (262, 3, [2 if samples == 3 else 1]), (273, 4, [0]), (277, 3, [samples]), (278, 4, [height]),
        (279, 4, [pixels.nbytes]), (284, 3, [1]),
    ]  # fmt: skip
    offset_code, count_code, inline = ("Q", "Q", 8) if big else ("I", "H", 4)
    header = struct.pack(order + "2sHHHQ", b"II" if order == "<" else b"MM", 43, 8, 0, 16) if big else struct.pack(order + "2sHI", b"II" if order == "<" else b"MM", 42, 8)
    ifd_size = struct.calcsize(order + count_code) + len(tags) * (4 + struct.calcsize(order + offset_code) + inline) + inline
    extra = len(header) + ifd_size  # values that do not fit in an entry go here, then the pixels
    entries, extra_bytes = [], b""
    for tag, kind, values in tags:
        packed = struct.pack(order + {3: "H", 4: "I"}[kind] * len(values), *values)
        if tag == 273:
            packed = b""  # filled below once the pixel offset is known
        entries.append([tag, kind, len(values), packed])
    for entry in entries:
        if len(entry[3]) > inline:
            entry.append(extra + len(extra_bytes))
            extra_bytes += entry[3]
    pixel_offset = extra + len(extra_bytes)
    ifd = struct.pack(order + count_code, len(entries))
    for entry in entries:
        tag, kind, count, packed = entry[:4]
        if tag == 273:
            packed = struct.pack(order + "I", pixel_offset)
        value = struct.pack(order + offset_code, entry[4]) if len(entry) > 4 else packed.ljust(inline, b"\x00")
        ifd += struct.pack(order + "HH" + offset_code, tag, kind, count) + value
    ifd += b"\x00" * inline  # no next directory
    return header + ifd + extra_bytes + pixels.tobytes()


def jpeg_with_thumbnail(main: bytes, thumbnail: bytes) -> tuple[bytes, int]:
    """`main` with an EXIF APP1 segment holding `thumbnail` (as cameras write it); and where the thumbnail ends."""
    ifd1 = struct.pack("<H", 2) + struct.pack("<HHII", 513, 4, 1, 44) + struct.pack("<HHII", 514, 4, 1, len(thumbnail)) + b"\x00" * 4
    exif = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<HI", 0, 14) + ifd1 + thumbnail
    assert len(exif) == 44 + len(thumbnail)
    payload = b"Exif\x00\x00" + exif
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return main[:2] + segment + main[2:], 2 + len(segment)


def _png_fix_ihdr_crc(data: bytes) -> bytes:
    return data[:29] + struct.pack(">I", zlib.crc32(data[12:29])) + data[33:]


def declare_size(name: str, data: bytes, width: int, height: int) -> bytes:
    """A sample whose header says width x height instead of 53x37, the rest unchanged (a decompression bomb's
    shape: a few bytes that promise a huge image)."""

    def swap(old: bytes, new: bytes, data: bytes = data) -> bytes:
        assert old in data, (name, old)
        return data.replace(old, new, 1)

    be16, le16 = (lambda a, b: struct.pack(">HH", a, b)), (lambda a, b: struct.pack("<HH", a, b))
    be32, le32 = (lambda a, b: struct.pack(">II", a, b)), (lambda a, b: struct.pack("<II", a, b))
    fmt = name.split("-")[0]
    if fmt == "jpeg":
        return swap(be16(HEIGHT, WIDTH), be16(height, width))
    if fmt == "png":
        return _png_fix_ihdr_crc(swap(be32(WIDTH, HEIGHT), be32(width, height)))
    if fmt == "gif":
        return swap(b"GIF89a" + le16(WIDTH, HEIGHT), b"GIF89a" + le16(width, height))
    if fmt == "bmp":
        return swap(le32(WIDTH, HEIGHT), le32(width, height))
    if fmt == "webp":  # the VP8X canvas (24-bit sizes minus one)
        old = (WIDTH - 1).to_bytes(3, "little") + (HEIGHT - 1).to_bytes(3, "little")
        return swap(old, (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little"))
    if fmt == "ras":
        return swap(be32(WIDTH, HEIGHT), be32(width, height))
    if fmt in ("jp2", "j2k"):  # SIZ, and the jp2 ihdr box
        data = swap(be32(WIDTH, HEIGHT), be32(width, height))
        return swap(b"ihdr" + be32(HEIGHT, WIDTH), b"ihdr" + be32(height, width), data) if fmt == "jp2" else data
    if fmt == "avif":
        return swap(b"ispe\x00\x00\x00\x00" + be32(WIDTH, HEIGHT), b"ispe\x00\x00\x00\x00" + be32(width, height))
    if fmt == "hdr":
        return swap(b"-Y %d +X %d" % (HEIGHT, WIDTH), b"-Y %d +X %d" % (height, width))
    if fmt == "pam":
        return swap(b"HEIGHT %d" % HEIGHT, b"HEIGHT %d" % height, swap(b"WIDTH %d" % WIDTH, b"WIDTH %d" % width))
    if fmt in ("ppm", "pgm", "pbm", "pfm"):
        return swap(b"%d %d" % (WIDTH, HEIGHT), b"%d %d" % (width, height))
    raise ValueError(name)
