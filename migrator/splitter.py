"""Split a MySQL script into statements the way the `mysql` command-line client does.

Semantics (mysql client, default options):
- `DELIMITER x` at the start of a line (any case, any delimiter string, optionally quoted)
  changes the statement delimiter; a pending statement before it is sent first.
- Delimiters inside '...' and "..." strings (backslash escapes, doubled quotes), `...`
  names and comments do not end a statement.
- `-- ` (dash dash + whitespace), `#` and `/* ... */` comments are dropped, like the client's
  default --skip-comments; `/*! ... */` versioned comments and `/*+ ... */` optimizer hints
  are kept and sent to the server, which executes them.
- BEGIN ... END bodies of procedures/functions/triggers need a non-`;` delimiter, exactly
  as with the client; the body is sent intact, `;` and all.
Each statement knows the 1-based line of its first significant character.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from migrator.errors import ConfigurationError


@dataclass(frozen=True)
class Statement:
    sql: str  # without the delimiter
    line: int  # 1-based line in its file where the statement starts
    delimiter: str = field(default=";", compare=False)  # the delimiter in force
    # Computed once here: the engine reads both for every statement it sends (a
    # functools.cached_property takes a lock on each first access, measurably slower).
    keyword: str = field(init=False, compare=False, repr=False)  # first word, upper-cased
    checksum: str = field(init=False, compare=False, repr=False)  # sha256 of the text

    def __post_init__(self) -> None:
        first = _FIRST_WORD.match(self.sql)
        object.__setattr__(self, "keyword", first.group(1).upper() if first else "")
        digest = hashlib.sha256(self.sql.encode("utf-8")).hexdigest()
        object.__setattr__(self, "checksum", digest)


class SplitError(ConfigurationError):
    def __init__(self, line: int, problem: str):
        self.line = line
        super().__init__([f"line {line}: {problem}"], heading="cannot split the script")


_DELIMITER_COMMAND = re.compile(r"[ \t]*delimiter(?=[ \t\r\n]|$)(.*)", re.IGNORECASE | re.DOTALL)
_SPECIAL = re.compile(r"['\"`#/*-]")
_FIRST_WORD = re.compile(r"\s*([A-Za-z]+)")
_BLANKS = re.compile(r"[ \t\f\v]+")
_PLAIN_RUNS: dict[str, re.Pattern[str]] = {}


def _plain_run(first_delimiter_char: str) -> re.Pattern[str]:
    """Runs of characters that can start nothing special (strings, comments, the delimiter)."""
    pattern = _PLAIN_RUNS.get(first_delimiter_char)
    if pattern is None:
        pattern = re.compile(r"[^'\"`#\-/*\s" + re.escape(first_delimiter_char) + r"]+")
        _PLAIN_RUNS[first_delimiter_char] = pattern
    return pattern


_END_QUOTE = {"'": re.compile(r"\\.|'", re.DOTALL), '"': re.compile(r'\\.|"', re.DOTALL)}


def _delimiter_argument(rest: str, line_no: int) -> str:
    rest = rest.strip()
    if not rest:
        raise SplitError(line_no, "DELIMITER must be followed by a delimiter character or string")
    if rest[0] in "'\"`":
        end = rest.find(rest[0], 1)
        value = rest[1:end] if end > 0 else rest[1:]
    else:
        value = rest.split()[0]
    if not value:
        raise SplitError(line_no, "DELIMITER must not be empty")
    if "\\" in value:
        raise SplitError(line_no, "DELIMITER cannot contain a backslash character")
    return value


def split_statements(text: str) -> list[Statement]:
    """Statements of a script, in order, each with its starting line."""
    statements: list[Statement] = []
    delimiter = ";"
    buf: list[str] = []
    start_line = 0  # line of the first significant character of the pending statement
    in_quote = ""  # "'", '"' or "`" while inside a string / quoted name
    quote_line = 0
    in_comment = False  # inside /* ... */
    comment_line = 0
    in_conditional = False  # inside /*! ... */ (kept)

    def emit() -> None:
        nonlocal buf, start_line
        sql = "".join(buf).strip()
        if start_line and sql:
            statements.append(Statement(sql, start_line, delimiter))
        buf = []
        start_line = 0

    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not in_quote and not in_comment and not in_conditional:
            command = _DELIMITER_COMMAND.match(line)
            if command:
                emit()
                delimiter = _delimiter_argument(command.group(1), line_no)
                continue
        if not in_quote and not in_comment and not in_conditional and not _SPECIAL.search(line):
            # Fast path: nothing on this line but plain text and delimiters.
            for n, piece in enumerate(line.split(delimiter)):
                if n:
                    emit()
                if not start_line and not piece.isspace() and piece:
                    start_line = line_no
                buf.append(piece)
            buf.append("\n")
            continue
        pos, end = 0, len(line)
        plain = _plain_run(delimiter[0])
        while pos < end:
            if in_comment:
                close = line.find("*/", pos)
                if close < 0:
                    pos = end
                    break
                in_comment = False
                buf.append(" ")
                pos = close + 2
                continue
            if in_quote:
                if in_quote == "`":
                    close = line.find("`", pos)
                    if close < 0:
                        buf.append(line[pos:])
                        pos = end
                        break
                    buf.append(line[pos : close + 1])
                    pos = close + 1
                    in_quote = ""
                    continue
                pattern = _END_QUOTE[in_quote]
                while True:
                    m = pattern.search(line, pos)
                    if m is None:
                        buf.append(line[pos:])
                        pos = end
                        break
                    buf.append(line[pos : m.end()])
                    pos = m.end()
                    if m.group() == in_quote:
                        in_quote = ""
                        break
                continue
            m = plain.match(line, pos)
            if m:
                if not start_line:
                    start_line = line_no
                buf.append(m.group())
                pos = m.end()
                continue
            m = _BLANKS.match(line, pos)
            if m:
                buf.append(m.group())
                pos = m.end()
                continue
            if line.startswith(delimiter, pos):
                emit()
                pos += len(delimiter)
                continue
            ch = line[pos]
            nxt = line[pos + 1 : pos + 2]
            if ch in " \t\f\v":
                buf.append(ch)
                pos += 1
            elif ch in "'\"`":
                if not start_line:
                    start_line = line_no
                in_quote, quote_line = ch, line_no
                buf.append(ch)
                pos += 1
            elif ch == "#" or (
                ch == "-" and nxt == "-" and line[pos + 2 : pos + 3] in ("", " ", "\t")
            ):
                pos = end  # comment to end of line
            elif ch == "/" and nxt == "*":
                kind = line[pos + 2 : pos + 3]
                if kind in ("!", "+"):
                    if not start_line:
                        start_line = line_no
                    in_conditional = True
                    buf.append("/*" + kind)
                    pos += 3
                else:
                    in_comment, comment_line = True, line_no
                    pos += 2
            elif ch == "*" and nxt == "/" and in_conditional:
                in_conditional = False
                buf.append("*/")
                pos += 2
            else:
                if not start_line:
                    start_line = line_no
                buf.append(ch)
                pos += 1
        buf.append("\n")
    if in_quote:
        what = "quoted name" if in_quote == "`" else "string"
        raise SplitError(quote_line, f"unterminated {what} (opened with {in_quote})")
    if in_comment:
        raise SplitError(comment_line, "unterminated /* comment")
    emit()
    return statements
