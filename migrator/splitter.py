"""Read a script the way the `mariadb` client reads a file (batch mode, default options).

What the client does, and so what this does (client/mysql.cc, read_and_execute/add_line;
each point checked against mariadb 10.11's client, see tests/test_migrator_commands.py):
- Bytes pass through: the file is never decoded for meaning. A statement's `sql` holds the
  file's bytes one character per byte (latin-1), so any byte sequence (UTF-8 or latin1 text,
  raw BLOB bytes in a dump) is sent exactly as it is in the file (`Statement.payload`) and
  costs one byte of memory per byte; `Statement.text` is the same read as UTF-8, for people.
  The syntax the client looks at is ASCII, so this reads every ASCII-compatible encoding as
  the client does (not Shift-JIS, Big5, GBK: their second bytes may be ASCII punctuation).
- CRLF is read as LF (a lone CR is kept); a UTF-8 BOM at the start of a file is skipped; a NUL
  byte is refused (the client refuses it unless --binary-mode).
- `'...'` and `"..."` strings (backslash escapes, doubled quotes) and `` `names` `` never end a
  statement. `-- ` (dash dash + whitespace; at the start of a statement any `--`), `#` and
  `/* */` comments are dropped; `/*!...*/` and `/*M!...*/` executable comments are kept (the
  server runs them), and so are `/*+ ... */` optimizer hints (MySQL 8 uses them; the mariadb
  client strips them, MariaDB ignores them: the same result on MariaDB).
- Client commands. On a line of its own, when no statement is pending, the first word may be
  a command (`use db`, `source f.sql`, `delimiter //`, `charset x`, `warnings`, ...); so may a
  completed statement's first word (`use db;`). `\\x` short forms work anywhere outside
  strings (`SELECT 1\\G`). A DELIMITER line inside a pending statement is not a command.
  - honoured: use/\\u (a USE statement), charset/\\C (SET NAMES), delimiter/\\d, go/\\g and
    ego/\\G (end the statement), clear/\\c (drop it), exit/quit/\\q (stop reading the file;
    in a sourced file, that file), source/\\. (the file is read in place, its path relative to
    the migration folder: the client's working directory when it is run from there), and
    sandbox/\\- (mariadb-dump's first line; `source` is refused after it, in that file);
  - no effect on the database, skipped: warnings, nowarning, print, status, rehash, prompt,
    pager, nopager, notee, help;
  - refused, before anything runs: system/\\!, tee/\\T (they act on the migrator's host),
    connect/\\r (another session), edit/\\e (interactive), unknown \\x commands.
Each statement knows its file and the line it starts on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from migrator.errors import ConfigurationError


def as_text(raw: bytes) -> str:
    """Bytes as the splitter holds them: one character per byte."""
    return raw.decode("latin-1")


def as_bytes(text: str) -> bytes:
    """Back to the bytes (as_text's inverse)."""
    return text.encode("latin-1")


def readable(text: str) -> str:
    """Splitter text for people: its bytes read as UTF-8 (others shown as replacements)."""
    return as_bytes(text).decode("utf-8", "replace")


# The first word of a statement, seen through a leading executable comment
# (`/*!40101 SET ...*/`, `/*M!100100 ...*/`): what the server runs. A comment no server runs
# (mariadb-dump's `/*M!999999\- enable the sandbox mode */`) is looked past.
_EXECUTABLE = re.compile(r"\s*/\*M?!(\d*)")
_WORD = re.compile(r"\s*([A-Za-z]+)")


def first_keyword(sql: str) -> str:
    pos = 0
    while True:
        match = _EXECUTABLE.match(sql, pos)
        if match is None:
            break
        if int(match.group(1) or 0) < 999999:
            pos = match.end()
            break
        close = sql.find("*/", match.end())
        if close < 0:
            return ""
        pos = close + 2
    word = _WORD.match(sql, pos)
    return word.group(1).upper() if word else ""


_TOKEN_OR_SPACE = re.compile(r"""'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`[^`]*`|\s+""", re.S)
_WORDISH = re.compile(r"[\w$@'\"`\x80-\xff]", re.ASCII)


def fingerprint(sql: str) -> str:
    """The statement with comments gone (the splitter dropped them) and whitespace outside
    strings reduced to what separates two words: re-indenting or commenting a completed
    statement does not change it (resume's promise)."""

    def replace(m: re.Match[str]) -> str:
        token = m.group()
        if not token.isspace():
            return token
        before = sql[m.start() - 1] if m.start() else ""
        after = sql[m.end()] if m.end() < len(sql) else ""
        return " " if before and after and _WORDISH.match(before) and _WORDISH.match(after) else ""

    return _TOKEN_OR_SPACE.sub(replace, sql.strip())


@dataclass(frozen=True)
class Statement:
    sql: str  # without the delimiter; surrogate-escaped text (see module docstring)
    line: int  # 1-based line where it starts, in `file`
    delimiter: str = field(default=";", compare=False)  # the delimiter in force
    file: str | None = field(default=None, compare=False)  # sourced file; None: the migration
    command: str | None = field(default=None, compare=False)  # the client command it came from
    keyword: str = field(init=False, compare=False, repr=False)  # first word, upper-cased

    def __post_init__(self) -> None:
        object.__setattr__(self, "keyword", first_keyword(self.sql))

    @property
    def payload(self) -> bytes:
        """What goes to the server: the file's own bytes."""
        return as_bytes(self.sql)

    @property
    def text(self) -> str:
        """The statement as people read it (its bytes as UTF-8)."""
        return readable(self.sql)

    @property
    def checksum(self) -> str:
        """sha256 of the statement's fingerprint (comments and layout excluded)."""
        return hashlib.sha256(as_bytes(fingerprint(self.sql))).hexdigest()

    @property
    def legacy_checksum(self) -> str:
        """What history rows written before statement digests hold: sha256 of the text."""
        return hashlib.sha256(as_bytes(self.sql)).hexdigest()

    @property
    def where(self) -> str:
        """'line 12', or 'parts/a.sql line 3' for a statement of a sourced file."""
        return f"{self.file} line {self.line}" if self.file else f"line {self.line}"


class SplitError(ConfigurationError):
    def __init__(self, problems: list[str]):
        super().__init__(problems, heading="cannot read the script")


# -- client commands ----------------------------------------------------------------------

# name -> (short form, takes an argument, what the engine does with it)
_COMMANDS: dict[str, tuple[str, bool, str]] = {
    "?": ("?", True, "skip"),
    "charset": ("C", True, "charset"),
    "clear": ("c", False, "clear"),
    "connect": ("r", True, "refuse"),
    "delimiter": ("d", True, "delimiter"),
    "edit": ("e", False, "refuse"),
    "ego": ("G", False, "go"),
    "exit": ("q", False, "quit"),
    "go": ("g", False, "go"),
    "help": ("h", True, "skip"),
    "nopager": ("n", False, "skip"),
    "notee": ("t", False, "skip"),
    "nowarning": ("w", False, "skip"),
    "pager": ("P", True, "skip"),
    "print": ("p", False, "skip"),
    "prompt": ("R", True, "skip"),
    "quit": ("q", False, "quit"),
    "rehash": ("#", False, "skip"),
    "sandbox": ("-", False, "sandbox"),
    "source": (".", True, "source"),
    "status": ("s", False, "skip"),
    "system": ("!", True, "refuse"),
    "tee": ("T", True, "refuse"),
    "use": ("u", True, "use"),
    "warnings": ("W", False, "skip"),
}
_SHORT = {short: name for name, (short, _, _) in _COMMANDS.items() if name not in ("exit", "?")}
_SHORT["q"] = "quit"
_SHORT["?"] = "?"
_REFUSED = {
    "system": "runs a program on the migrator's host",
    "tee": "writes a file on the migrator's host",
    "connect": "opens another session, which a migration cannot span",
    "edit": "opens an editor",
}
_SANDBOXED = {"source", "system", "tee"}  # what `sandbox` forbids (mariadb 10.11)


def _get_arg(text: str, short: bool) -> str | None:
    """The client's get_arg: the command's first argument, optionally quoted, backslash
    escapes removed; None when there is none or a quote is left open."""
    pos = 2 if short else 0
    if not short:
        text = text.lstrip()
        while pos < len(text) and not text[pos].isspace():
            pos += 1
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        return None
    quote = text[pos] if text[pos] in "'\"`" else ""
    pos += bool(quote)
    out: list[str] = []
    while pos < len(text):
        ch = text[pos]
        if (ch == "\\" and pos + 1 < len(text)) or (
            not short and quote and ch == quote and text[pos + 1 : pos + 2] == quote
        ):
            out.append(text[pos + 1])
            pos += 2
            continue
        if ch == (quote or " "):
            quote = ""
            break
        out.append(ch)
        pos += 1
    if quote or not out:
        return None
    return "".join(out)


def _source_name(text: str) -> str | None:
    """The client's com_source: everything after the first space, trailing blanks dropped."""
    text = text.lstrip()
    space = text.find(" ")
    if space < 0:
        return None
    name = text[space:].strip(" \t\r\n\f\v")
    return name.rstrip("".join(chr(c) for c in range(32))) or None


_COMMAND_INITIALS = frozenset(
    "".join(name[0] for name in _COMMANDS) + "".join(name[0].upper() for name in _COMMANDS)
)


def _line_command(text: str, delimiter: str) -> tuple[str, str] | None:
    """The client's find_command(line): (name, the command's text) if `text` is a command."""
    stripped = text.lstrip()
    if not stripped or stripped[0] not in _COMMAND_INITIALS:
        return None
    if "\\g" in stripped or (delimiter in stripped and not _is_delimiter_command(stripped)):
        return None
    end = len(stripped)
    for i, ch in enumerate(stripped):
        if ch in " \t":
            end = i
            break
    name = stripped[:end].lower()
    spec = _COMMANDS.get(name)
    if spec is None:
        return None
    has_args = bool(stripped[end:].strip(" \t\r\n"))
    if has_args and not (spec[1] and _get_arg(stripped, short=False) is not None):
        return None
    return name, stripped.rstrip("\r\n")


def _is_delimiter_command(text: str) -> bool:
    return text[:9].lower() == "delimiter" and (len(text) == 9 or text[9] in " \t\r\n")


# -- the scanner --------------------------------------------------------------------------

_QUOTE_END = {
    "'": re.compile(r"[^'\\]*(?:\\.[^'\\]*)*'", re.S),
    '"': re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.S),
    "`": re.compile(r"[^`]*`"),
}
_SPECIALS: dict[str, re.Pattern[str]] = {}
_BLOCK = 1 << 20  # bytes read at a time
# Text inside a statement up to what needs the line rules (delimiter `;`, comments, a
# backslash outside strings, a quote whose string does not close): any number of lines.
_BODY = re.compile(
    r"""(?:'[^'\\]*+(?:\\.[^'\\]*+)*+'|[^'"`#\-/\\;]++|"[^"\\]*+(?:\\.[^"\\]*+)*+"|`[^`]*+`"""
    r"""|-(?!-(?:\s|$))|/(?!\*))*+"""
)
_GLUED_DELIMITER = re.compile(r"\n[ \t]*delimiter(?=[ \t\n])", re.I)
_DELIMITER_LINE = re.compile(r"[ \t]*delimiter(?=[ \t\n]|$)", re.I)
# A line that is only plain text and complete strings (no comment, backslash or command),
# ending with the `;` delimiter or not: most lines of a dump. One regex reads it.
_PLAIN_LINE = re.compile(
    r"""((?:[^'"`#\-/*\\;]++|'[^'\\]*(?:\\.[^'\\]*)*'|"[^"\\]*(?:\\.[^"\\]*)*"|`[^`]*`"""
    r"""|-(?!-)|/(?!\*)|\*(?!/))*+)(;[ \t\r]*)?"""
)


def _specials(delimiter: str) -> re.Pattern[str]:
    pattern = _SPECIALS.get(delimiter)
    if pattern is None:
        pattern = re.compile("['\"`#*\\-/\\\\" + re.escape(delimiter[0]) + "]")
        _SPECIALS[delimiter] = pattern
    return pattern


@dataclass
class _Context:
    """What the client keeps across sourced files: the delimiter; and the problems found."""

    location: Path | None  # the migration folder: `source` paths are relative to it
    delimiter: str = ";"
    problems: list[str] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)  # every file read, in order
    strict: bool = True  # False: skip problems silently (the apply pass; validated before)


class _Stop(Exception):
    """`quit`/`exit`: stop reading the current file."""


class _FileScanner:
    """One file's read_and_execute: its own buffer and string/comment state."""

    def __init__(self, ctx: _Context, name: str | None, prefix: str, depth: int):
        self.ctx = ctx
        self.name = name  # shown in messages; None for the migration's own file
        self.prefix = prefix  # "V1__x.sql: " or "V1__x.sql: parts/a.sql "
        self.depth = depth
        self.buf: list[str] = []
        self.start = 0  # line of the pending statement's first significant character
        self.quote = ""  # inside '...', "..." or `...` (across lines)
        self.comment = 0  # line a /* comment opened on, while inside it
        self.need_space = False
        self.sandbox = False
        self.quote_line = 0

    def problem(self, line: int, message: str) -> None:
        if self.ctx.strict:
            self.ctx.problems.append(f"{self.prefix}line {line}: {message}")

    # statements ---------------------------------------------------------------------------
    def _append(self, text: str, line: int) -> None:
        if not text:
            return
        if not self.buf:
            text = text.lstrip()
            if not text:
                return
            self.start = line
            self.need_space = False
        elif self.need_space:
            if not text[0].isspace():
                text = " " + text
            self.need_space = False
        self.buf.append(text)

    def _emit(self, check_command: bool = True) -> Iterator[Statement]:
        if not self.buf:
            return
        sql = "".join(self.buf).rstrip()
        line = self.start
        self.buf, self.start, self.need_space = [], 0, False
        if not sql:
            return
        if check_command:
            found = _line_command(sql, self.ctx.delimiter)
            if found is not None:
                yield from self._command(found[0], found[1], line, short=False)
                return
        yield Statement(sql, line, self.ctx.delimiter, self.name)

    def _command(self, name: str, text: str, line: int, short: bool) -> Iterator[Statement]:
        action = _COMMANDS[name][2]
        shown = f"\\{_COMMANDS[name][0]}" if short else name
        if self.sandbox and name in _SANDBOXED:
            self.problem(
                line,
                f"client command `{shown}` is not allowed in the sandbox mode (turned on "
                "earlier in this file, as mariadb-dump's first line does; the client refuses "
                "it too)",
            )
            return
        if action == "refuse":
            self.problem(
                line,
                f"client command `{shown}` {_REFUSED[name]}: not allowed in a migration "
                "(remove it)",
            )
        elif action == "go":
            yield from self._emit(check_command=False)
        elif action == "clear":
            self.buf, self.start, self.need_space = [], 0, False
        elif action == "quit":
            raise _Stop
        elif action == "sandbox":
            self.sandbox = True
        elif action == "delimiter":
            value = _get_arg(text, short)
            if value is None:
                self.problem(line, "DELIMITER must be followed by a delimiter character or string")
            elif "\\" in value:
                self.problem(line, "DELIMITER cannot contain a backslash character")
            else:
                self.ctx.delimiter = value
        elif action == "use":
            database = _get_arg(text, short)
            if database is None:
                self.problem(line, "USE must be followed by a database name")
            else:
                sql = "USE `" + database.replace("`", "``") + "`"
                yield Statement(sql, line, self.ctx.delimiter, self.name, command=text.strip())
        elif action == "charset":
            charset = _get_arg(text, short)
            if charset is None or not re.fullmatch(r"\w+", charset):
                self.problem(line, f"client command `{shown}` needs a character set name")
            else:
                sql = f"SET NAMES {charset}"
                yield Statement(sql, line, self.ctx.delimiter, self.name, command=text.strip())
        elif action == "source":
            yield from self._source(_source_name(text), line)

    def _source(self, target: str | None, line: int) -> Iterator[Statement]:
        self.buf, self.start, self.need_space = [], 0, False  # the client empties its buffer
        if not target:
            self.problem(line, "source needs a file name")
            return
        location = self.ctx.location
        path = Path(target) if location is None else (location / target)
        if self.depth >= 16:
            self.problem(line, f"cannot source {target}: sourced files nest too deep (a loop?)")
            return
        try:
            handle = path.open("rb")
        except OSError as exc:
            self.problem(line, f"cannot source {target}: {exc.strerror or exc}")
            return
        self.ctx.sources.append(path)
        base = self.prefix.split(": ", 1)[0] + ": "
        child = _FileScanner(self.ctx, target, f"{base}{target} ", self.depth + 1)
        child.sandbox = self.sandbox
        with handle:
            yield from child.run(iter(lambda: handle.read(_BLOCK), b""))

    # lines --------------------------------------------------------------------------------
    def run(self, blocks: Iterable[bytes]) -> Iterator[Statement]:
        """Read the file: `blocks` of its bytes, any size; lines are cut here."""
        self.number = 1
        carry = b""
        first = True
        try:
            for raw in blocks:
                raw = carry + raw
                cut = raw.rfind(b"\n") + 1
                carry = raw[cut:]
                if cut:
                    yield from self._block(raw[:cut], first)
                    first = False
            if carry:
                yield from self._block(carry, first)
        except _Stop:
            self.buf = []
            return
        if self.quote:
            what = "quoted name" if self.quote == "`" else "string"
            self.problem(self.quote_line, f"unterminated {what} (opened with {self.quote})")
            return
        if self.comment:
            self.problem(self.comment, "unterminated /* comment")
            return
        yield from self._emit(check_command=False)

    def _block(self, raw: bytes, first: bool) -> Iterator[Statement]:
        """Complete lines (the file's last may lack its newline)."""
        if first and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        data = as_text(raw)
        if "\r\n" in data:
            data = data.replace("\r\n", "\n")
        if "\0" in data:  # rare: line by line, so each NUL is reported with its line
            for line in data.splitlines(keepends=True):
                if "\0" in line:
                    self.problem(
                        self.number,
                        "a NUL byte (the mariadb client refuses these unless --binary-mode; "
                        "write it as \\0 inside a string)",
                    )
                else:
                    yield from self._line(line, self.number, True)
                self.number += line.endswith("\n")
            return
        pos, end = 0, len(data)
        while pos < end:
            at_start = pos == 0 or data[pos - 1] == "\n"
            if (
                self.buf
                and not self.quote
                and not self.comment
                and self.ctx.delimiter == ";"
                and not (at_start and _DELIMITER_LINE.match(data, pos))
            ):
                # Inside a statement: C-speed through text, strings and whole lines, up to
                # the next thing the line rules must see (the delimiter, a comment, a
                # backslash, a string that goes on past this block).
                match = _BODY.match(data, pos)
                stop = match.end() if match is not None else pos  # (it matches: `*+`)
                if stop > pos:
                    glued = _GLUED_DELIMITER.search(data, pos, stop)
                    if glued is not None:  # a DELIMITER line inside the statement
                        stop = glued.start() + 1
                    self.buf.append(data[pos:stop])
                    self.number += data.count("\n", pos, stop)
                    pos = stop
                    continue
            line_end = data.find("\n", pos)
            line_end = end if line_end < 0 else line_end + 1
            yield from self._line(data[pos:line_end], self.number, at_start)
            if data[line_end - 1] == "\n":
                self.number += 1
            pos = line_end

    def _line(self, line: str, number: int, at_start: bool) -> Iterator[Statement]:
        """One line (or the rest of one), as add_line reads it; it ends with its newline
        (but the file's last line). Commands are looked for at the start of a line."""
        ctx = self.ctx
        text = line[:-1] if line.endswith("\n") else line
        if not self.quote and not self.comment:
            if not self.buf and at_start:
                found = _line_command(text, ctx.delimiter)
                if found is not None:
                    yield from self._command(found[0], found[1], number, short=False)
                    return
            if ctx.delimiter == ";":
                plain = _PLAIN_LINE.fullmatch(text)
                if plain is not None and (
                    plain.group(2) or not at_start or not _is_delimiter_command(text.lstrip())
                ):
                    self._append(plain.group(1), number)
                    if plain.group(2):
                        yield from self._emit()
                    elif self.buf:
                        self.buf.append("\n")
                    return
        pos, end = 0, len(text)
        ss_comment = False  # inside /*! ... */ on this line: a short command's argument ends at */
        delimiter = ctx.delimiter
        specials = _specials(delimiter)
        while pos < end:
            if self.comment:
                close = text.find("*/", pos)
                if close < 0:
                    return  # the rest of the line, newline included, is comment
                self.comment = 0
                self.need_space = True
                pos = close + 2
                continue
            if self.quote:
                match = _QUOTE_END[self.quote].match(text, pos)
                if match is None:
                    self.buf.append(text[pos:])
                    break
                close = match.end()
                if text.startswith(self.quote, close):  # doubled quote: still inside
                    self.buf.append(text[pos : close + 1])
                    pos = close + 1
                    continue
                self.buf.append(text[pos:close])
                self.quote = ""
                pos = close
                continue
            match = specials.search(text, pos)
            if match is None:
                self._append(text[pos:], number)
                break
            at = match.start()
            if at > pos:
                self._append(text[pos:at], number)
            ch = text[at]
            nxt = text[at + 1 : at + 2]
            if text.startswith(delimiter, at):
                yield from self._emit()
                pos = at + len(delimiter)
                delimiter = ctx.delimiter
                specials = _specials(delimiter)
                continue
            if ch in "'\"`":
                self._append(ch, number)
                self.quote, self.quote_line = ch, number
                pos = at + 1
                continue
            if ch == "#" or (
                ch == "-" and nxt == "-" and (text[at + 2 : at + 3] in _BLANK or not self.buf)
            ):
                break  # a comment to the end of the line
            if ch == "/" and nxt == "*":
                kind = text[at + 2 : at + 3]
                if kind in ("!", "+") or text.startswith("M!", at + 2):
                    ss_comment = ss_comment or kind != "+"
                    self._append("/*", number)
                    pos = at + 2
                    continue
                self.comment = number
                pos = at + 2
                continue
            if ch == "*" and nxt == "/":
                ss_comment = False
                self._append("*/", number)
                pos = at + 2
                continue
            if ch == "\\":
                if not nxt:
                    break  # a backslash ending the line is dropped
                if nxt == "N":
                    self._append("\\N", number)
                    pos = at + 2
                    continue
                name = _SHORT.get(nxt)
                if name is None:
                    self.problem(
                        number, f"unknown client command `\\{nxt}` (the client stops here)"
                    )
                    pos = at + 2
                    continue
                yield from self._command(name, text[at:], number, short=True)
                delimiter = ctx.delimiter
                specials = _specials(delimiter)
                pos = at + 2
                if _COMMANDS[name][1]:  # the argument runs to the delimiter (in /*! */: to */)
                    if ss_comment:
                        close = text.find("*/", pos)
                        pos = end if close < 0 else close
                    else:
                        close = text.find(delimiter, pos)
                        pos = end if close < 0 else close + len(delimiter)
                continue
            # A lone '-', '/' or '*', or the delimiter's first character alone.
            self._append(ch, number)
            pos = at + 1
        if self.comment:
            return
        if self.buf and (self.quote or not at_start or not _is_delimiter_command(text.lstrip())):
            # (no newline after a DELIMITER line glued to a pending statement, as the client)
            self.buf.append("\n")


_BLANK = ("", " ", "\t", "\r", "\f", "\v")


def iter_statements(
    path: Path,
    *,
    location: Path | None = None,
    script: str | None = None,
    problems: list[str] | None = None,
    sources: list[Path] | None = None,
) -> Iterator[Statement]:
    """The statements of the file at `path`, read as the client reads it, `source`d files
    included in place (relative to `location`, default the file's folder). Streams: holds
    one line and one pending statement at a time. Problems (refused commands, unreadable
    sourced files, NUL bytes, unterminated strings) are added to `problems` when given, in
    which case reading goes on; otherwise the first problem raises SplitError at the end."""
    ctx = _Context(location if location is not None else path.parent)
    if problems is None:
        ctx.problems = []
    else:
        ctx.problems = problems
    name = script or path.name
    scanner = _FileScanner(ctx, None, f"{name}: ", 0)
    with path.open("rb") as handle:
        yield from scanner.run(iter(lambda: handle.read(_BLOCK), b""))
    if sources is not None:
        sources.extend(ctx.sources)
    if problems is None and ctx.problems:
        raise SplitError(ctx.problems)


def split_text(
    raw: bytes,
    *,
    name: str = "",
    location: Path | None = None,
    problems: list[str] | None = None,
    sources: list[Path] | None = None,
) -> Iterator[Statement]:
    """`iter_statements` over bytes in memory (a small file read once)."""
    if raw.count(b"\n") <= 1 and not raw.startswith(b"\xef\xbb\xbf") and b"\0" not in raw:
        # One line: most small migrations are one plain statement (the common case of
        # thousands of files). The same result as the scanner's, in one regex.
        text = as_text(raw).rstrip("\n").removesuffix("\r")
        plain = _PLAIN_LINE.fullmatch(text)
        head = text.lstrip()[:1]
        if plain is not None and plain.group(2) and head and head not in _COMMAND_INITIALS:
            yield Statement(plain.group(1).strip(), 1)
            return
    ctx = _Context(location)
    own = problems is None
    ctx.problems = [] if own else problems  # type: ignore[assignment]
    scanner = _FileScanner(ctx, None, f"{name}: " if name else "", 0)
    yield from scanner.run((raw,))
    if sources is not None:
        sources.extend(ctx.sources)
    if own and ctx.problems:
        raise SplitError(ctx.problems)


def split_statements(text: str) -> list[Statement]:
    """Statements of a script given as text (UTF-8 when sent), in order, with their lines;
    their `text` is what was given, their `sql` its bytes (see as_text)."""
    return list(split_text(text.encode("utf-8", "surrogateescape")))
