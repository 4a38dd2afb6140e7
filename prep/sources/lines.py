"""Text lines as label files and pixel CSVs hold them: bounded lines, BOMs, CRLF and UTF-16 caught."""

from __future__ import annotations

from collections.abc import Iterator

from prep.core.errors import InputError

MAX_LINE_BYTES = 1 << 20  # a label line is a name and a label: a longer one means a wrong or broken file
_CHUNK = 1 << 16  # bytes read at a time
BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark: never part of a value, wherever an editor or `cat` left it

def looks_like_utf16(head: bytes) -> bool:
    """A UTF-16 byte-order mark, or ASCII text with a NUL beside every character (UTF-16 without one)."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    sample = head[:4096]
    return len(sample) >= 4 and max(sample[0::2].count(0), sample[1::2].count(0)) * 4 >= len(sample)


def read_lines(f, path: str, max_bytes: int = MAX_LINE_BYTES, universal: bool = False) -> Iterator[tuple[int, bytes]]:
    """(line number, line with its line break) of a binary text stream, holding at most ~max_bytes of a line.

    Line breaks are b"\\n", or with `universal` also b"\\r\\n" and a lone b"\\r" (old Mac / Excel CSV) as
    Python's text mode reads them. A file without line breaks is never read into memory whole: a line
    over max_bytes, a NUL byte or UTF-16 text is an InputError naming the file and line, since each means
    this is not the text file it should be.
    """
    number = 0
    pending = b""
    first = True
    while True:
        chunk = f.read(_CHUNK)
        if first:
            first = False
            if looks_like_utf16(chunk):
                raise InputError(f"{path}: looks like UTF-16 text; save it as UTF-8")
        data = pending + chunk if pending else chunk
        # Splitting a whole chunk in C keeps a million-line file fast; the checks per line run only when
        # the chunk has a NUL or is long enough to hold an over-long line.
        lines = data.splitlines(keepends=True) if universal else data.split(b"\n")
        if universal:
            if chunk and lines and not lines[-1].endswith(b"\n"):
                pending = lines.pop()  # unfinished, or a \r whose \n may start the next chunk
            else:
                pending = b""
        else:
            pending = lines.pop()
            lines = [line + b"\n" for line in lines]
            if not chunk and pending:
                lines.append(pending)
                pending = b""
        if b"\0" in data or len(data) > max_bytes:
            for offset, line in enumerate(lines, start=number + 1):
                _checked_line(line, path, offset, max_bytes)
            _checked_line(pending, path, number + len(lines) + 1, max_bytes)
        yield from enumerate(lines, start=number + 1)
        number += len(lines)
        if not chunk:
            return


def _checked_line(line: bytes, path: str, number: int, max_bytes: int) -> bytes:
    if len(line) > max_bytes + 2:  # + the line break
        raise InputError(
            f"{path}:{number}: a line longer than {max_bytes} bytes: this does not look like a text file with one entry per line"
        )
    if b"\0" in line:
        raise InputError(f"{path}:{number}: a NUL byte: this does not look like a text file (save it as plain UTF-8 text)")
    return line
