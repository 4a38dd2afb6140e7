"""Keeping the driver's resident memory at what it holds (Linux/glibc; a no-op elsewhere).

glibc raises its mmap threshold each time a large block is freed, after which blocks up to that size come
from the heap, where freed memory stays resident: planning a million images left ~90 MB resident that
nothing used. A fixed threshold keeps large blocks in mmap (returned on free), and trimming after planning
hands back what the heap holds free, before the shard workers fork from this process.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3
_libc = None


def _c():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim  # glibc only
        except (OSError, AttributeError):
            _libc = False
    return _libc


def fixed_threshold(size: int = 1 << 20) -> None:
    """Blocks of `size` bytes and more are mapped and unmapped on their own, never kept on the heap."""
    libc = _c()
    if libc:
        libc.mallopt(_M_MMAP_THRESHOLD, size)


def trim() -> None:
    """Return the heap's free memory to the system."""
    libc = _c()
    if libc:
        libc.malloc_trim(0)
