"""README.md's code blocks, as tests read them: the shell commands to run and the config files to write."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
NAMED_FILE = re.compile(r"`(conf/[\w/.-]+\.yaml)`")


@dataclass
class Block:
    lang: str
    text: str
    line: int  # where the block starts in README.md (1-based), for messages
    before: str  # the README text between the previous block and this one


def blocks(text: str | None = None) -> list[Block]:
    text = README.read_text() if text is None else text
    found, end = [], 0
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(match.group(1), match.group(2), line, text[end : match.start()]))
        end = match.end()
    return found


@dataclass
class Command:
    text: str  # one shell command, continuation lines joined
    line: int
    interrupted: bool = False  # a `# ^C` comment follows it: the README shows it stopped part-way


def commands(block: Block) -> list[Command]:
    """The command lines of a bash block: backslash continuations joined, comment lines dropped."""
    found: list[Command] = []
    pending, start = "", 0
    for offset, raw in enumerate(block.text.splitlines()):
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            if "^C" in line and found:
                found[-1].interrupted = True
            continue
        if not pending:
            start = block.line + 1 + offset
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        found.append(Command(pending + line.strip(), start))
        pending = ""
    return found


def config_files(text: str | None = None) -> dict[str, str]:
    """The YAML blocks the README introduces by a path (`conf/dataset/flowers.yaml`): path -> content."""
    files = {}
    for block in blocks(text):
        if block.lang == "yaml":
            lead = [line for line in block.before.strip().splitlines() if line.strip()]
            named = NAMED_FILE.findall(" ".join(lead[-3:]))
            assert named, f"README.md:{block.line}: a yaml block must follow the `conf/...yaml` path it is saved as"
            files[named[0]] = block.text
    return files
