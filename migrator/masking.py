"""Mask the password literals in a SQL statement before anyone is shown it.

One small lexer-driven pass (strings, comments, words) instead of a regex per syntax, so a
clause split over lines, a comment between keywords or a character-set introducer cannot hide a
password. Masked: the string literal after
- `IDENTIFIED [WITH plugin] BY`, `IDENTIFIED ... BY PASSWORD`, `IDENTIFIED WITH plugin AS`
  (CREATE/ALTER USER incl. second factors and INITIAL AUTHENTICATION, GRANT, CLONE INSTANCE);
- `REPLACE` (the current password of ALTER USER / SET PASSWORD);
- any `...PASSWORD =` (SET PASSWORD, MASTER_PASSWORD=, SOURCE_PASSWORD=, START REPLICA /
  START GROUP_REPLICATION ... PASSWORD=), `PASSWORD 'x'` (CREATE/ALTER SERVER ... OPTIONS) and
  the old `PASSWORD('x')` function;
- every `=` in a SET PASSWORD statement;
- the fourth argument of RDS's `mysql.rds_set_external_master*/rds_set_external_source*`.
A literal that itself holds SQL (dynamic SQL for PREPARE) is masked inside, recursively.
Syntax: https://dev.mysql.com/doc/refman/8.4/en/create-user.html, alter-user.html,
set-password.html, change-replication-source-to.html, start-replica.html,
start-group-replication.html, create-server.html, clone.html (same directory);
https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/mysql-stored-proc-replicating.html
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MASK = "[secret]"
_MASKED_LITERAL = f"'{MASK}'"

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>(?:--(?=\s|$)|\#)[^\n]*|/\*(?![!+])[\s\S]*?(?:\*/|$))
    | (?P<code_comment>/\*[!+]\d*|\*/)
    | (?P<string>'(?:[^'\\]|\\[\s\S]|'')*(?:'|$)|"(?:[^"\\]|\\[\s\S]|"")*(?:"|$))
    | (?P<word>`(?:[^`]|``)*(?:`|$)|[A-Za-z0-9_$@]+)
    | (?P<punct>[\s\S])
    """,
    re.VERBOSE,
)
_INTRODUCER = re.compile(r"^(?:_[A-Za-z0-9]+|[Nn])$")
_RDS_EXTERNAL = re.compile(r"^rds_set_external_(?:master|source)\w*$", re.IGNORECASE)
_RDS_PASSWORD_ARGUMENT = 3  # host, port, user, password, ...


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else self.text


def _tokens(sql: str) -> list[_Token]:
    """Significant tokens: no whitespace, no comments (a /*! */ comment's body is code)."""
    found = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup or "punct"
        if kind in ("space", "comment", "code_comment"):
            continue
        found.append(_Token(kind, match.group(), match.start(), match.end()))
    return found


def _is_password_literal(tokens: list[_Token], index: int, set_password: bool) -> bool:
    before = [t.upper for t in tokens[max(0, index - 5) : index]]
    # A character-set introducer (_utf8mb4'x', N'x') belongs to the literal.
    if before and _INTRODUCER.match(before[-1]) and tokens[index - 1].end == tokens[index].start:
        before.pop()
    if not before:
        return False
    last = before[-1]
    previous = before[-2] if len(before) > 1 else ""
    if last in ("BY", "AS") and "IDENTIFIED" in before[:-1]:
        return True
    if last == "PASSWORD" and previous == "BY" and "IDENTIFIED" in before:
        return True
    if last == "REPLACE":
        return True
    if last.endswith("PASSWORD"):  # OPTIONS (PASSWORD 'x')
        return True
    if last in ("=", "(") and previous.endswith("PASSWORD"):
        return True
    return last == "=" and set_password


def _rds_password_positions(tokens: list[_Token]) -> set[int]:
    """Token indexes of the password argument in CALL mysql.rds_set_external_*(...)."""
    positions = set()
    for i, token in enumerate(tokens):
        name = token.text.rsplit(".", 1)[-1]
        if not (token.kind == "word" and _RDS_EXTERNAL.match(name)):
            continue
        if i + 1 >= len(tokens) or tokens[i + 1].text != "(":
            continue
        depth, argument = 0, 0
        for j in range(i + 1, len(tokens)):
            text = tokens[j].text
            if text == "(":
                depth += 1
            elif text == ")":
                depth -= 1
                if depth == 0:
                    break
            elif text == "," and depth == 1:
                argument += 1
            elif depth == 1 and argument == _RDS_PASSWORD_ARGUMENT and tokens[j].kind == "string":
                positions.add(j)
    return positions


def _unquote(literal: str) -> tuple[str, str]:
    quote = literal[0]
    body = literal[1:-1] if len(literal) > 1 and literal.endswith(quote) else literal[1:]
    return quote, body.replace(quote * 2, quote)


def mask_passwords(sql: str) -> str:
    """`sql` with every password literal replaced by '[secret]' (everything else unchanged)."""
    tokens = _tokens(sql)
    words = [t.upper for t in tokens if t.kind == "word"][:2]
    set_password = words == ["SET", "PASSWORD"]
    rds_positions = _rds_password_positions(tokens)
    out: list[str] = []
    position = 0
    for index, token in enumerate(tokens):
        if token.kind != "string":
            continue
        if index in rds_positions or _is_password_literal(tokens, index, set_password):
            replacement = _MASKED_LITERAL
        else:
            quote, body = _unquote(token.text)
            inner = mask_passwords(body)
            if inner == body:
                continue
            replacement = quote + inner.replace(quote, quote * 2) + quote
        out += [sql[position : token.start], replacement]
        position = token.end
    out.append(sql[position:])
    return "".join(out)
