"""The commands README.md and docs/*.md show, read from the documents themselves.

- Fenced blocks tagged bash/sh/shell/console, and untagged blocks that hold commands, are
  command blocks: each logical line (`\\` continuations joined, `#` comments dropped) is a
  command line. In a block with `$ ` prompts only the prompted lines are commands; the rest is
  their output. A line with optional-syntax (`[--x ...]`, `{a,b}`) is a usage synopsis.
- Inline code spans in the prose that start with a command are mentions: they are checked,
  not run (they are often fragments such as `scripts/migrate repair --retry`).

Every simple command (split at `;`, `&&`, `||`, `|`, and inside `$(...)`) is either the
project's (run by tests/test_documented_commands.py), or an external tool's that cannot run
here (pulumi, aws, gh, ...), checked against what is known about that tool.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
SHELL_TAGS = {"bash", "sh", "shell", "console"}
NOT_SHELL_TAGS = {"yaml", "json", "mermaid", "sql", "python", "toml", "text", "markdown", "md"}
SEPARATORS = {";", "&&", "||", "|", "&"}
REDIRECTIONS = {">", ">>", "<", "2>", "2>&1"}
EXTERNAL_TOOLS = {"pulumi", "aws", "gh", "git", "npm"}

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<tag>[\w+-]*)\s*$")
_INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_FLAG = re.compile(r"^--?[A-Za-z][\w-]*")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence
    tag: str
    lines: tuple[tuple[int, str], ...]  # (line number, text without the fence's indentation)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class SimpleCommand:
    words: tuple[str, ...]  # after leading VAR=value assignments

    @property
    def program(self) -> str:
        return self.words[0] if self.words else ""

    @property
    def flags(self) -> list[str]:
        found = []
        for word in self.words[1:]:
            match = _FLAG.match(word)
            if match:
                found.append(match.group(0))
        return found


@dataclass(frozen=True)
class CommandLine:
    path: Path
    line: int
    text: str  # as the document writes it (continuations joined, comment dropped)
    commands: tuple[SimpleCommand, ...] = field(default=())
    synopsis: bool = False  # a usage line with [optional] or {choice} syntax: checked, not run

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body: list[tuple[int, str]] = []
        index += 1
        while index < len(lines) and lines[index].strip() != fence:
            text = lines[index]
            body.append((index + 1, text[indent:] if text[:indent].isspace() else text.lstrip()))
            index += 1
        found.append(Block(path, index - len(body), opening["tag"].lower(), tuple(body)))
        index += 1
    return found


def strip_comment(text: str) -> str:
    """`text` without a shell comment (a `#` starting a word, outside quotes)."""
    quote = ""
    for position, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or text[position - 1].isspace()):
            return text[:position].rstrip()
    return text.rstrip()


def logical_lines(lines: tuple[tuple[int, str], ...]) -> list[tuple[int, str]]:
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, text in lines:
        if pending is not None:
            number, text = pending[0], pending[1] + " " + text.strip()
            pending = None
        if text.rstrip().endswith("\\"):
            pending = (number, text.rstrip()[:-1].rstrip())
            continue
        joined.append((number, text))
    if pending is not None:
        joined.append(pending)
    return joined


def split_commands(text: str) -> list[SimpleCommand]:
    """The simple commands of one shell line, `$(...)` substitutions included. A `<name>`
    placeholder is one word (kept with its angle brackets), not a redirection."""
    text = re.sub(
        r"<([A-Za-z][^<>]*)>", lambda m: "\x01" + m[1].replace(" ", "\x02") + "\x03", text
    )
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: one command, as written
        tokens = text.split()
    commands: list[SimpleCommand] = []
    current: list[str] = []
    skip_next = False
    for token in tokens:
        if skip_next:  # the target of a redirection
            skip_next = False
            continue
        if token in SEPARATORS or set(token) <= set(";&|"):
            commands.append(SimpleCommand(tuple(current)))
            current = []
            continue
        if token in REDIRECTIONS or set(token) <= set("<>"):
            skip_next = True
            continue
        for inner in re.findall(r"\$\(([^()]*)\)", token):
            commands.extend(split_commands(inner))
        current.append(token)
    commands.append(SimpleCommand(tuple(current)))
    cleaned = []
    for command in commands:
        words = [
            w.replace("\x01", "<").replace("\x02", " ").replace("\x03", ">") for w in command.words
        ]
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words.pop(0)
        if words:
            cleaned.append(SimpleCommand(tuple(words)))
    return cleaned


def is_project_program(program: str) -> bool:
    return program.startswith(("scripts/", ".venv/bin/", "./scripts/")) or program in {
        "make",
        ".",
        "source",
        "cd",
    }


def is_known_program(program: str) -> bool:
    if program.endswith("/"):  # a directory, e.g. `scripts/`
        return False
    return is_project_program(program) or program in EXTERNAL_TOOLS


def is_synopsis(text: str) -> bool:
    return bool(re.search(r"(^|\s)\[[^\]]*\]|\{[\w-]+(,[\w-]+)+\}", text))


def command_lines(block: Block) -> list[CommandLine]:
    """The command lines of a fenced block (none for an output or config block)."""
    if block.tag in NOT_SHELL_TAGS:
        return []
    prompted = [(n, t) for n, t in block.lines if t.startswith("$ ")]
    source = [(n, t[2:]) for n, t in prompted] if prompted else list(block.lines)
    found = []
    for number, raw in logical_lines(tuple(source)):
        text = strip_comment(raw).strip()
        if not text:
            continue
        commands = split_commands(text)
        # In an untagged block, commands are the lines that start with a known program.
        untagged = block.tag not in SHELL_TAGS and not prompted
        if untagged and (not commands or not is_known_program(commands[0].program)):
            continue
        found.append(CommandLine(block.path, number, text, tuple(commands), is_synopsis(text)))
    return found


def documented_command_lines() -> list[CommandLine]:
    return [line for path in DOCUMENTS for block in blocks(path) for line in command_lines(block)]


def inline_mentions() -> list[CommandLine]:
    """Inline code spans of the prose that start with a command (outside fenced blocks)."""
    found = []
    for path in DOCUMENTS:
        fenced = {n for block in blocks(path) for n, _ in block.lines}
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if number in fenced or _FENCE.match(text):
                continue
            for span in _INLINE.findall(text):
                commands = split_commands(span)
                if not commands or not is_known_program(commands[0].program):
                    continue
                if commands[0].program in {".", "source", "cd"}:
                    continue
                found.append(CommandLine(path, number, span, tuple(commands), is_synopsis(span)))
    return found
