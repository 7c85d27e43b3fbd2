"""Least-privilege grants for the application roles, declared here and enforced on every apply.

`ROLE_PRIVILEGES` is the single source of truth: each role gets exactly these privileges on
the application schema and nothing anywhere else. `repair_grants` compares that with what
the server reports (`SHOW GRANTS`, which RDS MySQL 8 and MariaDB both support and format
alike) and issues REVOKE for what is extra and GRANT for what is missing, so a grant removed
or added by hand is put right by the next apply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pymysql

ROLE_PRIVILEGES: Mapping[str, tuple[str, ...]] = {
    "app": ("SELECT", "INSERT", "UPDATE", "DELETE", "EXECUTE"),
    "readonly": ("SELECT",),
}

# Each role alternates between two database users: rotation gives the inactive one a new
# password, then flips the role's secret to it; the other keeps working until the next one.
USER_SUFFIXES = ("a", "b")

ER_NONEXISTING_GRANT = 1141  # SHOW GRANTS for a user that does not exist

_GRANT_ON = re.compile(
    r"^GRANT (?P<privileges>.+?) ON (?P<target>(?:(?:PROCEDURE|FUNCTION|TABLE) )?\S+) "
    r"TO (?P<grantee>\S+)(?P<rest>.*)$",
    re.DOTALL,
)
_GRANT_ROLE = re.compile(r"^GRANT (?P<roles>.+?) TO (?P<grantee>\S+)(?P<rest>.*)$", re.DOTALL)


def users_for(role: str, prefix: str = "") -> tuple[str, str]:
    """The role's two accounts, e.g. app_a / app_b (prefix: for several schemas per server)."""
    return (f"{prefix}{role}_{USER_SUFFIXES[0]}", f"{prefix}{role}_{USER_SUFFIXES[1]}")


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def account(user: str) -> str:
    """The account as SQL: every application user is `name`@`%` (any host; TLS required)."""
    return f"{quote_identifier(user)}@'%'"


def schema_target(schema: str) -> str:
    """`schema`.* with `_` and `%` escaped: at the database level they are wildcards in GRANT,
    so an unescaped `app_db`.* would also cover a schema named `appxdb`."""
    escaped = schema.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    return quote_identifier(escaped) + ".*"


def _split_privileges(text: str) -> list[str]:
    """'SELECT, INSERT (`a`, `b`), UPDATE' -> ['SELECT', 'INSERT (`a`, `b`)', 'UPDATE']."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p.upper() if "(" not in p else p for p in parts if p]


@dataclass(frozen=True)
class Grants:
    """What the server says one account holds: target -> privileges, plus granted roles."""

    on: Mapping[str, frozenset[str]]
    roles: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        """Sorted, JSON-able lines like 'SELECT ON `db`.*' (state output; drift is visible)."""
        lines = [f"{p} ON {t}" for t, privs in self.on.items() for p in privs]
        lines += [f"ROLE {r}" for r in self.roles]
        return sorted(lines)


def parse_show_grants(rows: Iterable[str]) -> Grants:
    on: dict[str, set[str]] = {}
    roles: list[str] = []
    for row in rows:
        match = _GRANT_ON.match(row)
        if match:
            if match["privileges"].upper().startswith("PROXY"):
                continue  # proxy grants are not privileges on data; never ours to manage
            privileges = set(_split_privileges(match["privileges"])) - {"USAGE"}
            if "WITH GRANT OPTION" in match["rest"].upper():
                privileges.add("GRANT OPTION")
            if privileges:
                on.setdefault(match["target"], set()).update(privileges)
            continue
        match = _GRANT_ROLE.match(row)
        if match:
            roles.extend(r.strip() for r in match["roles"].split(","))
    return Grants({t: frozenset(p) for t, p in on.items()}, tuple(sorted(roles)))


def desired_grants(schema: str, privileges: Sequence[str]) -> Grants:
    return Grants({schema_target(schema): frozenset(p.upper() for p in privileges)})


def read_grants(cursor: pymysql.cursors.Cursor, user: str) -> Grants | None:
    """The account's grants, or None when the account does not exist."""
    try:
        cursor.execute(f"SHOW GRANTS FOR {account(user)}")
    except pymysql.err.OperationalError as exc:
        if exc.args and exc.args[0] == ER_NONEXISTING_GRANT:
            return None
        raise
    return parse_show_grants(row[0] for row in cursor.fetchall())


def repair_statements(user: str, actual: Grants, desired: Grants) -> list[str]:
    """REVOKE what is extra, GRANT what is missing (no secrets in these statements)."""
    statements: list[str] = []
    who = account(user)
    for role in actual.roles:
        statements.append(f"REVOKE {role} FROM {who}")
    for target, held in sorted(actual.on.items()):
        wanted = desired.on.get(target, frozenset())
        extra = set(held) - set(wanted)
        if "ALL PRIVILEGES" in extra:
            # ALL cannot be revoked piecemeal: take it all away; the GRANT below restores
            # exactly the declared set.
            extra = {"ALL PRIVILEGES"} | ({"GRANT OPTION"} & extra)
        plain = sorted(extra - {"GRANT OPTION"})
        if plain:
            statements.append(f"REVOKE {', '.join(plain)} ON {target} FROM {who}")
        if "GRANT OPTION" in extra:
            statements.append(f"REVOKE GRANT OPTION ON {target} FROM {who}")
    for target, wanted in sorted(desired.on.items()):
        held = set(actual.on.get(target, frozenset()))
        if "ALL PRIVILEGES" in held:
            held = set()  # revoked above
        missing = sorted(set(wanted) - held)
        if missing:
            statements.append(f"GRANT {', '.join(missing)} ON {target} TO {who}")
    return statements


def repair_grants(
    cursor: pymysql.cursors.Cursor,
    user: str,
    schema: str,
    privileges: Sequence[str],
    actual: Grants | None = None,
) -> list[str]:
    """Bring the account's grants to exactly `privileges` on `schema`; returns what was run.
    `actual`: the account's grants if the caller has just read them (else they are read)."""
    if actual is None:
        actual = read_grants(cursor, user)
    if actual is None:
        raise LookupError(f"database user {user!r} does not exist")
    statements = repair_statements(user, actual, desired_grants(schema, privileges))
    for statement in statements:
        cursor.execute(statement)
    return statements
