"""writer.pattern, the shard-name template: checked whole before anything is written."""

from __future__ import annotations

import re
import string
import unicodedata

from prep.core.errors import ConfigError

PATTERN_FIELDS = {"dataset", "split", "index", "number", "count"}


# Values of each field's type to try a pattern with: a pattern is checked by formatting it, because its
# format specs only fail (or succeed) when applied to a value: "{index:s}" is a ValueError at write time.
_SAMPLES = (
    {"dataset": "dataset", "split": "train", "index": 0, "number": 1, "count": 2},
    {"dataset": "dataset", "split": "train", "index": 1, "number": 2, "count": 2},
    {"dataset": "dataset", "split": "validation", "index": 99999, "number": 100000, "count": 100000},
)
_MAX_NAME_BYTES = 255  # the longest file or folder name common file systems (ext4, APFS, NTFS) accept


def check_pattern(pattern: str) -> str:
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
    unknown = sorted({name for name, _, _ in used if re.split(r"[.\[]", name)[0] not in PATTERN_FIELDS})
    if unknown:
        raise refuse(f"unknown field(s) {unknown}; use {sorted(PATTERN_FIELDS)}")
    for name, spec, conversion in used:
        field = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if name not in PATTERN_FIELDS:
            raise refuse(f"{field}: only plain field names are accepted (no attribute or index access); use {sorted(PATTERN_FIELDS)}")
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
