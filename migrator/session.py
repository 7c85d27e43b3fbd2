"""What statements do to the session they run in, as far as the engine needs to know.

- `effective`: the text the server runs, with executable comments (`/*!40101 ... */`,
  `/*M!100616 ... */`) unwrapped or dropped for the connected server: `/*!40000 USE x */`
  is a USE.
- `Effect`: per statement, whether it may change session state (so the next migration needs
  a fresh session), takes or releases table locks, and how a resumed migration re-creates
  what it set up (replayed: USE, SET NAMES, SET of session variables and user variables from
  constants or other variables, PREPARE, LOCK TABLES) or what it set up that cannot be
  re-created faithfully (a user variable computed from the data, a temporary table).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from migrator.splitter import Statement


@dataclass(frozen=True)
class Server:
    mariadb: bool
    version: int  # 101119 for 10.11.19, 80400 for 8.4.0: what /*!NNNNN compares with

    @classmethod
    def from_banner(cls, banner: str) -> Server:
        """From the handshake's version string ('10.11.19-MariaDB-0+deb12u1', '8.4.3')."""
        numbers = [int(n) for n in re.findall(r"\d+", banner.split("-", 1)[0])[:3]]
        major, minor, patch = ([*numbers, 0, 0, 0])[:3]
        return cls(mariadb="mariadb" in banner.lower(), version=major * 10000 + minor * 100 + patch)


DEFAULT_SERVER = Server(mariadb=True, version=101100)

_EXECUTABLE = re.compile(r"/\*(M?)!(\d{5,6})?(.*?)\*/", re.S)


def effective(sql: str, server: Server) -> str:
    """The statement as `server` runs it: executable comments it runs are unwrapped, the ones
    it skips are dropped."""
    if "/*" not in sql:
        return sql

    def unwrap(m: re.Match[str]) -> str:
        mariadb_only, version = m.group(1), int(m.group(2) or 0)
        runs = (not mariadb_only or server.mariadb) and server.version >= version
        return f" {m.group(3)} " if runs else " "

    return _EXECUTABLE.sub(unwrap, sql).strip()


# -- classification -----------------------------------------------------------------------

_STRINGS = re.compile(
    r"""'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*"|`[^`]*(?:``[^`]*)*`""",
    re.S,
)
_WORDS = re.compile(r"[A-Za-z_]+")
_USER_VAR = re.compile(
    r"(?<![\w'\"`$@.])@([A-Za-z0-9_$.]+|'(?:[^']|'')*'|`(?:[^`]|``)*`|\"[^\"]*\")"
)
_ASSIGNED_VAR = re.compile(r"(?<![\w'\"`$@.])@([A-Za-z0-9_$.]+|'(?:[^']|'')*'|`(?:[^`]|``)*`)\s*:=")
_INTO_VARS = re.compile(r"\bINTO\s+(@[^;]*?)(?:\bFROM\b|\bFOR\b|\bLOCK\b|$)", re.I | re.S)
_CALL = re.compile(r"^\s*CALL\b", re.I)
_FUNCTION = re.compile(r"([A-Za-z_][A-Za-z0-9_$.]*)\s*\(")
_SET_TARGET = re.compile(
    r"\s*(?:(GLOBAL|PERSIST|PERSIST_ONLY|SESSION|LOCAL)\s+|@@(global|persist|session|local)\.|@@)?"
    r"(@?[A-Za-z0-9_$.`'\"]+)\s*(?::?=)\s*",
    re.I,
)

# Functions whose result depends only on their arguments (and the session, replayed in
# order): a SET using only these is re-created exactly by running it again.
_FAITHFUL_FUNCTIONS = frozenset(
    [
        "IF",
        "IFNULL",
        "COALESCE",
        "NULLIF",
        "CONCAT",
        "CONCAT_WS",
        "REPLACE",
        "LOWER",
        "UPPER",
        "LCASE",
        "UCASE",
        "TRIM",
        "LTRIM",
        "RTRIM",
        "SUBSTRING",
        "SUBSTR",
        "LEFT",
        "RIGHT",
        "LENGTH",
        "CHAR_LENGTH",
        "CAST",
        "CONVERT",
        "GREATEST",
        "LEAST",
        "ABS",
        "ROUND",
        "FLOOR",
        "CEIL",
        "CEILING",
        "MOD",
        "CHAR",
        "HEX",
        "UNHEX",
        "LPAD",
        "RPAD",
        "REPEAT",
        "FIND_IN_SET",
        "INSTR",
        "LOCATE",
        "FORMAT",
        "DATABASE",
        "SCHEMA",
        "USER",
        "CURRENT_USER",
        "SESSION_USER",
        "SYSTEM_USER",
        "VERSION",
        "CHARSET",
        "COLLATION",
        "ISNULL",
        "STRCMP",
        "SPACE",
        "REVERSE",
        "ELT",
        "FIELD",
    ]
)
_NEUTRAL = frozenset(
    [
        "ALTER",
        "ANALYZE",
        "COMMENT",
        "CREATE",
        "DELETE",
        "DROP",
        "GRANT",
        "INSERT",
        "OPTIMIZE",
        "RENAME",
        "REPLACE",
        "REVOKE",
        "TRUNCATE",
        "UPDATE",
    ]
)
_READ_ONLY = frozenset(
    ["SELECT", "SHOW", "SET", "DO", "USE", "DESCRIBE", "DESC", "EXPLAIN", "HELP"]
)
# Statements that return exactly one result, so whatever follows one in a packet can be told
# apart from it (a CALL, an EXECUTE, a custom-delimiter block may return several).
_SINGLE_RESULT = frozenset(
    [
        "ALTER",
        "ANALYZE",
        "COMMIT",
        "CREATE",
        "DELETE",
        "DO",
        "DROP",
        "GRANT",
        "INSERT",
        "LOCK",
        "OPTIMIZE",
        "RENAME",
        "REPLACE",
        "REVOKE",
        "ROLLBACK",
        "SAVEPOINT",
        "SELECT",
        "SET",
        "START",
        "TRUNCATE",
        "UNLOCK",
        "UPDATE",
        "USE",
        "BEGIN",
        "PREPARE",
        "DEALLOCATE",
        "SHOW",
    ]
)


def _bare(sql: str) -> str:
    """The text with strings and quoted names blanked (keywords found outside them only)."""
    return _STRINGS.sub(lambda m: "''", sql)


def _var_name(raw: str) -> str:
    if raw[:1] in "'`\"":
        raw = raw[1:-1]
    return raw.lower()


def _faithful(expression: str) -> bool:
    """True if evaluating `expression` again, after the same session statements, gives the
    same value: constants, variables, deterministic functions; a subquery without FROM."""
    bare = _bare(expression)
    words = {w.upper() for w in _WORDS.findall(bare)}
    if "SELECT" in words and "FROM" in words:
        return False
    return all(
        name.upper() in _FAITHFUL_FUNCTIONS or name.upper() == "SELECT"
        for name in _FUNCTION.findall(bare)
    )


def _split_assignments(body: str) -> list[str]:
    """`a=1, @b=(1,2), c='x,y'` -> its comma-separated assignments (commas at depth 0)."""
    parts, depth, current = [], 0, []
    for token in re.split(r"('(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"|`[^`]*`|[(),])", body):
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif token == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(token)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


@dataclass
class Effect:
    keyword: str
    # Changes session state another migration could see (needs a fresh session after).
    touches_session: bool = False
    lock: str = ""  # "lock" (LOCK TABLES), "unlock" (UNLOCK TABLES or what ends table locks)
    replay: bool = False  # re-run it to re-create its session state on resume
    # Session state it created that running it again would not re-create exactly.
    lost_vars: set[str] = field(default_factory=set)
    sets_vars: set[str] = field(default_factory=set)  # user variables it sets faithfully
    lost_tables: set[str] = field(default_factory=set)
    not_faithful: str = ""  # why a session setting of it cannot be re-created (refuse resume)
    uses_vars: set[str] = field(default_factory=set)
    read_only: bool = False
    single_result: bool = True
    # (database or None, table): the one table a plain INSERT/REPLACE/UPDATE/DELETE writes,
    # when it can be read from the statement's head.
    table: tuple[str | None, str] | None = None


_PLAIN_DML = frozenset(("INSERT", "UPDATE", "DELETE", "REPLACE"))
_NAME = r"(`(?:[^`]|``)+`|[A-Za-z0-9_$]+)"
_TARGET = re.compile(
    r"\s*(?:(?:INSERT|REPLACE)\s+(?:(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE)\s+)*(?:INTO\s+)?"
    rf"{_NAME}(?:\.{_NAME})?\s*[(\s]"
    r"|UPDATE\s+(?:(?:LOW_PRIORITY|IGNORE)\s+)*" + rf"{_NAME}(?:\.{_NAME})?\s+SET\s"
    r"|DELETE\s+(?:(?:LOW_PRIORITY|QUICK|IGNORE)\s+)*FROM\s+" + rf"{_NAME}(?:\.{_NAME})?"
    r"(?:\s+(?:WHERE|ORDER|LIMIT)\s|\s*$))",
    re.I,
)


def _dml_table(sql: str) -> tuple[str | None, str] | None:
    """The table a single-table INSERT, REPLACE, UPDATE or DELETE writes (None if unsure)."""
    match = _TARGET.match(sql[:400])
    if match is None:
        return None
    names = [n for n in match.groups() if n is not None]
    if len(names) not in (1, 2):
        return None
    clean = [n[1:-1].replace("``", "`") if n.startswith("`") else n for n in names]
    return (None, clean[0]) if len(clean) == 1 else (clean[0], clean[1])


_GET_LOCK = re.compile("get_lock", re.I)


def analyse(stmt: Statement, server: Server = DEFAULT_SERVER, detail: bool = False) -> Effect:
    """What `stmt` does to its session. Without `detail`, a plain INSERT/UPDATE/DELETE (the
    bulk of any dump, up to megabytes each) is judged from its keyword: it touches the session
    only if it mentions `@` or GET_LOCK (then conservatively). `detail` (resuming) reads it."""
    sql_text = stmt.sql
    if (
        not detail
        and stmt.keyword in _PLAIN_DML
        and stmt.delimiter == ";"
        and "/*!" not in sql_text
        and "/*M!" not in sql_text
    ):
        touches = "@" in sql_text or _GET_LOCK.search(sql_text) is not None
        return Effect(
            keyword=stmt.keyword,
            touches_session=touches,
            table=None if touches else _dml_table(sql_text),
        )
    sql = effective(stmt.sql, server)
    bare = _bare(sql)
    words = _WORDS.findall(bare[:200])
    keyword = words[0].upper() if words else ""
    second = words[1].upper() if len(words) > 1 else ""
    effect = Effect(keyword=keyword)
    effect.single_result = stmt.delimiter == ";" and keyword in _SINGLE_RESULT
    effect.read_only = keyword in _READ_ONLY and not re.search(
        r"\bINTO\s+(OUTFILE|DUMPFILE)\b", bare, re.I
    )
    mentioned = {_var_name(v) for v in _USER_VAR.findall(bare)}
    effect.uses_vars = mentioned
    assigned = {_var_name(v) for v in _ASSIGNED_VAR.findall(bare)}
    if keyword in ("SELECT", "DO", "CALL", "EXECUTE") or assigned:
        into = _INTO_VARS.search(bare) if keyword == "SELECT" else None
        if into:
            assigned |= {_var_name(v) for v in _USER_VAR.findall(into.group(1))}
        if keyword == "CALL":
            assigned |= mentioned  # OUT parameters
    if keyword == "LOCK" and second in ("TABLE", "TABLES"):
        effect.lock, effect.replay, effect.touches_session = "lock", True, True
    elif keyword == "UNLOCK" and second in ("TABLE", "TABLES"):
        effect.lock, effect.touches_session = "unlock", True
    elif (keyword, second) == ("START", "TRANSACTION") or (keyword == "BEGIN" and len(words) <= 2):
        effect.lock = "unlock"  # starting a transaction releases table locks
    if keyword == "USE":
        effect.replay = effect.touches_session = True
    elif keyword == "SET":
        _classify_set(sql, effect, set())  # `:=` in a SET is its own assignment
        assigned = set()
    elif keyword in ("PREPARE", "DEALLOCATE") or (keyword == "DROP" and second == "PREPARE"):
        effect.replay = effect.touches_session = True
    elif keyword == "CREATE" and second == "TEMPORARY":
        effect.touches_session = True
        name = re.search(r"\bTABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(`(?:[^`]|``)+`|[\w$.]+)", sql, re.I)
        if name:
            effect.lost_tables.add(name.group(1).strip("`").split(".")[-1].lower())
    if assigned:
        effect.lost_vars |= assigned
    neutral = keyword in _NEUTRAL and not (keyword == "CREATE" and second == "TEMPORARY")
    if not neutral or mentioned or "GET_LOCK" in bare.upper() or effect.lock:
        effect.touches_session = True
    return effect


def _classify_set(sql: str, effect: Effect, assigned: set[str]) -> None:
    effect.touches_session = True
    body = re.sub(r"^\s*SET\s+", "", sql, flags=re.I)
    head = body.lstrip()[:40].upper()
    if re.match(r"(NAMES|CHARACTER\s+SET|CHARSET|ROLE|(SESSION\s+)?TRANSACTION)\b", head):
        effect.replay = True
        return
    if re.match(r"(GLOBAL\s+TRANSACTION|PASSWORD|DEFAULT\s+ROLE|STATEMENT)\b", head):
        return  # not session state (persistent, or a statement of its own)
    replay, scope = False, "session"
    for part in _split_assignments(body):
        target = _SET_TARGET.match(part)
        if target is None:
            effect.not_faithful = effect.not_faithful or "it is not a SET this engine can read"
            continue
        scope_word = (target.group(1) or target.group(2) or scope).lower()
        scope = scope_word if target.group(1) else scope
        name, expression = target.group(3), part[target.end() :]
        if name.startswith("@"):
            if _faithful(expression):
                replay = True
                effect.sets_vars.add(_var_name(name[1:]))
            else:
                effect.lost_vars.add(_var_name(name[1:]))
        elif scope_word in ("global", "persist", "persist_only"):
            continue
        elif _faithful(expression):
            replay = True
        else:
            effect.not_faithful = (
                f"it sets the session variable {name.strip('`')} to a value computed from the data"
            )
    effect.replay = replay
    effect.lost_vars |= assigned
