"""What every label format shares: label kinds, the checked label file, JSON and CSV field values."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from prep.core import storage
from prep.core.errors import ConfigError, InputError
from prep.sources.base import LabelEntry, clean
from prep.sources.lines import read_lines

# What `labels.kind` accepts: how label values become ids (prep.run.listing.label_ids applies it).
KINDS = ("auto", "int", "name")


def check_kind(kind) -> str:
    """labels.kind as a plain string; an Enum member (matched by name, as OmegaConf does) works too."""
    value = getattr(kind, "name", kind)
    if value not in KINDS:
        raise ConfigError(
            f"labels.kind={kind!r}: choose auto (integers if every label is one, class names if none is), "
            "int (every label an integer) or name (every label a class name, ids by sorted name)"
        )
    return value


def excerpt(text: str, size: int = 80) -> str:
    """repr of a value for a message, shortened: a broken file can put a megabyte on one line."""
    if len(text) <= size:
        return repr(text)
    return f"{text[: size // 2]!r}... ({len(text)} characters)"


def check_label_file(path: str) -> None:
    """The path is a regular file: a folder is a mistake, and opening a FIFO would wait forever for a writer."""
    if not path:
        raise InputError("labels.path is not set: give the label file, e.g. labels.path=/data/val.txt")
    if storage.is_url(path):
        if storage.isdir(path):
            raise InputError(f"labels.path={path}: is a folder, expected a label file")
        if not storage.isfile(path):
            raise InputError(f"labels.path={path}: no such file")
        return
    try:
        mode = os.stat(storage.local(path)).st_mode
    except FileNotFoundError:
        raise InputError(f"labels.path={path}: no such file") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL in the path
        raise InputError(f"labels.path={path!r}: cannot read: {getattr(err, 'strerror', None) or err}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"labels.path={path}: is a folder, expected a label file")
    if not stat.S_ISREG(mode):
        raise InputError(f"labels.path={path}: not a regular file (a FIFO, socket or device), expected a label file")


def label_lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, text without its line break) for every line.

    CRLF, CR, byte-order marks and a missing final newline are fine. Lines are read and decoded one at a
    time, so a problem (not UTF-8, a NUL byte, a line of a gigabyte) is named with its exact line.
    """
    check_label_file(path)
    try:
        with storage.open_read(path) as f:
            for number, raw in read_lines(f, path, universal=True):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise InputError(
                        f"{path}:{number}: not UTF-8 text ({err.reason} at byte {err.start} of the line); save the file as UTF-8"
                    ) from None
                yield number, text.rstrip("\r\n").replace("\ufeff", "")
    except OSError as err:
        raise InputError(f"labels.path={path}: cannot read: {err.strerror or err}") from None


class JsonInt:
    """An integer as a JSON line writes it: its digits are kept, so any size parses and nothing is rounded."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class DuplicateKey(Exception):
    """A JSON object naming a key twice: json.loads would silently keep the last value."""


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    row = dict(pairs)
    if len(row) != len(pairs):
        raise DuplicateKey(next(key for i, (key, _) in enumerate(pairs) if key in dict(pairs[:i])))
    return row


JSON_TYPES = {bool: "true/false", float: "a number with a fraction or exponent", type(None): "null", list: "a list", dict: "an object"}


def label_text(value: object, where: str, line: str) -> str:
    """The label as text: a JSON integer's digits, or a string cleaned of invisible ends; anything else is an error."""
    if isinstance(value, JsonInt):
        return value.text
    if isinstance(value, str):
        text = clean(value)
        if text and not has_surrogate(text):
            return text
        if text:
            raise InputError(f"{where}: the label {excerpt(text)} is not valid Unicode (a lone surrogate), got {excerpt(line)}")
    kind = next((name for t, name in JSON_TYPES.items() if isinstance(value, t)), None)
    detail = f" ({kind})" if kind and not isinstance(value, str) else ""
    raise InputError(f"{where}: the label must be an integer or a class name, got {excerpt(line)}{detail}")


def has_surrogate(text: str) -> bool:
    # Only JSON's \ud800-style escapes make them; they cannot be written as UTF-8 into a record.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def field_text(row, key: str, setting: str, where: str, line: str) -> str:
    """A JSON line's field a splitter reads (a group, a split), as text."""
    if not isinstance(row, dict) or key not in row:
        raise InputError(f'{where}: no "{key}" field ({setting}): {excerpt(line)}')
    value = row[key]
    if isinstance(value, JsonInt):
        return value.text
    if isinstance(value, str):
        return clean(value)
    raise InputError(f'{where}: the "{key}" field must be a string or an integer, got {excerpt(line)}')


class LabelFormat:
    """The label-format interface: what the reader and the splitters ask of a label format.

    A format subclasses LabelFormat and fills in `iter_entries`; the reader streams it, so a million-line
    file is never held as a million objects. The rest has defaults for a format with no label file.
    """

    path: str | None = None  # the label file; only a label file can leave images of the folder unlabelled
    kind: str = "auto"  # how label values become ids: auto, int or name (labels.kind)
    has_columns: bool = False  # whether rows have named columns a splitter may read (split.group_by, split.column)
    # the columns a splitter reads -> the setting naming them; given by select_columns before reading
    columns: dict[str, str] = {}

    def iter_entries(self, source) -> Iterator[LabelEntry]:
        """Every labelled image, in file order; InputError naming the file and line for a bad one."""
        raise NotImplementedError

    def entries(self, source) -> list[LabelEntry]:
        """iter_entries as a list (tests and small files)."""
        return list(self.iter_entries(source))

    def select_columns(self, columns: dict[str, str]) -> None:
        """Also read these columns of every row, into LabelEntry.extra (a format with has_columns)."""
        self.columns = dict(columns)

    def ignored(self, source) -> list[str]:
        """Files of the folder this format leaves out on purpose (not images, hidden), named for the log."""
        return []

    def input_paths(self) -> list[str]:
        return [self.path] if self.path else []
