"""A small reader for our Dockerfile and .dockerignore, enough for the tests to check and replay them."""

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/RUN (after HEALTHCHECK's options: see below)."""
        text = self.args.strip()
        return json.loads(text) if text.startswith("[") else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Copy:
    sources: list[str]
    dest: str
    flags: dict[str, str]


def instructions(text: str) -> list[Instruction]:
    """Logical instructions: continuation lines joined, comments and blank lines dropped."""
    result, buffer, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker too
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    assert not buffer, "Dockerfile ends inside a continuation line"
    return result


def parse(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults (before the first FROM) and the stages, FROM expanded with those ARGs."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions(path.read_text()):
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert instruction.keyword == "ARG", f"line {instruction.line}: only ARG may precede FROM"
            key, _, value = instruction.args.partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append(instruction)
    return global_args, stages


def resolved(stages: list[Stage], stage: Stage) -> Stage:
    """`stage` with the stages it is built FROM folded in (`FROM service AS slim`): the base image at the
    root of the chain and every instruction in the order Docker applies them."""
    by_name = {s.name: s for s in stages if s.name}
    chain = [stage]
    while chain[0].base in by_name:
        chain.insert(0, by_name[chain[0].base])
    return Stage(chain[0].base, stage.name, [i for s in chain for i in s.instructions])


def target(stages: list[Stage], name: str) -> Stage:
    """The stage `docker build --target NAME` ends with, resolved."""
    return resolved(stages, next(s for s in stages if s.name == name))


def copy_of(instruction: Instruction) -> Copy:
    words = instruction.exec_form() or shlex.split(instruction.args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return Copy(words[:-1], words[-1], flags)


def key_values(instruction: Instruction) -> dict[str, str]:
    """ENV/ARG/LABEL key=value pairs (shell-style quoting)."""
    pairs = {}
    for word in shlex.split(instruction.args):
        key, _, value = word.partition("=")
        pairs[key] = value
    return pairs


def healthcheck_command(instruction: Instruction) -> tuple[dict[str, str], list[str]]:
    """HEALTHCHECK [--option=value ...] CMD [exec form]: the options and the command."""
    options_text, _, command = instruction.args.partition("CMD")
    options = {}
    for word in options_text.split():
        key, _, value = word.lstrip("-").partition("=")
        options[key] = value
    return options, json.loads(command.strip())


# --- .dockerignore, with Docker's semantics: last matching pattern wins, '!' re-includes, a pattern
# --- matches a path or any of its parent directories, '**' spans directories.


def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignore_patterns(path: Path = DOCKERIGNORE) -> list[tuple[bool, re.Pattern]]:
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line.lstrip("!").strip().strip("/")
        line = re.sub(r"/+", "/", line).removeprefix("./")
        patterns.append((negate, _pattern_regex(line)))
    return patterns


def is_ignored(relative: str, patterns: list[tuple[bool, re.Pattern]]) -> bool:
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for negate, regex in patterns:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negate
    return ignored
