"""The README's shell blocks, with the annotation in front of each (`<!-- readme-test: ... -->`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ANNOTATION = re.compile(r"<!--\s*readme-test:\s*(skip|server)\s*:?\s*(.*?)\s*-->")
FENCE_OPEN = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    code: str
    kind: str  # "run", "skip" or "server"
    note: str  # the skip reason or the server's readiness URL

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.kind})\n{self.code}"


def shell_blocks(readme: Path) -> list[Block]:
    """Every fenced block in `bash` or `sh`, in order."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE_OPEN.match(lines[index])
        if not opening:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        annotation = ANNOTATION.search(previous)
        if opening.group(1) in {"bash", "sh", "shell"}:
            blocks.append(
                Block(
                    line=index + 1,
                    code="\n".join(lines[index + 1 : end]),
                    kind=annotation.group(1) if annotation else "run",
                    note=annotation.group(2) if annotation else "",
                )
            )
        index = end + 1
    return blocks


def prose_lines(readme: Path) -> list[tuple[int, str]]:
    """Lines outside fenced blocks, numbered from 1."""
    inside = False
    prose = []
    for number, line in enumerate(readme.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):
            inside = not inside
            continue
        if not inside:
            prose.append((number, line))
    return prose
