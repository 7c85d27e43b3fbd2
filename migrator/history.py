"""The history table, kept in the target schema (the connection's database), always referred
to by its qualified name so a script's `USE other` cannot move it.

One row per application of a migration. Its `state` walks in_progress -> success | failed;
`statements_done` counts the statements known complete. The server commits `in_progress`
with statements_done = k BEFORE it runs statement k+1 (the write travels in the migration's
packet, just ahead of it), so a session lost mid-migration leaves exactly one in-flight
statement to resolve (`repair`). Every write is constant in size: a failed row keeps a digest
of its completed statements (`statements_digest`), not one checksum per statement.

The writes that travel with a script's statements (start, progress, success) run in the
script's own session, whatever it did to it: they use integers, constants and hex literals
with a character set introducer only, so SET NAMES, sql_mode (NO_BACKSLASH_ESCAPES,
ANSI_QUOTES) and time_zone cannot change what they write.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import pymysql

from migrator.discovery import Migration
from migrator.splitter import Statement, as_bytes, fingerprint

TABLE = "schema_history"
ER_NO_SUCH_TABLE = 1146
ER_BAD_FIELD = 1054

IN_PROGRESS = "in_progress"
FAILED = "failed"
SUCCESS = "success"

# Portable between MySQL 8 and MariaDB 10.11 (no 0900 collations named).
CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
  installed_rank INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  version VARCHAR(50) NULL,
  description VARCHAR(200) NOT NULL,
  type VARCHAR(20) NOT NULL,
  script VARCHAR(255) NOT NULL,
  checksum CHAR(64) NOT NULL,
  installed_by VARCHAR(100) NOT NULL,
  installed_on TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  execution_time INT NOT NULL DEFAULT 0 COMMENT 'milliseconds',
  success TINYINT(1) NOT NULL DEFAULT 0,
  state VARCHAR(20) NOT NULL COMMENT 'in_progress | failed | success',
  statements_total INT NOT NULL,
  statements_done INT NOT NULL DEFAULT 0,
  statement_checksums MEDIUMTEXT NOT NULL COMMENT 'rows before statements_digest: sha256 of each statement',
  error TEXT NULL,
  statements_digest CHAR(64) NULL COMMENT 'sha256 over statements 1..statements_done (failed rows)',
  KEY idx_schema_history_script (script)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
# History tables created before statement digests get the column (an instant ADD COLUMN on
# MySQL 8 and MariaDB >= 10.3), under the migration lock.
ADD_DIGEST = (
    "ALTER TABLE {table} ADD COLUMN statements_digest CHAR(64) NULL "
    "COMMENT 'sha256 over statements 1..statements_done (failed rows)'"
)


@dataclass
class HistoryRow:
    installed_rank: int
    version: str | None
    description: str
    type: str
    script: str
    checksum: str
    installed_by: str
    installed_on: str | datetime.datetime | None  # as the server shows it (its time zone)
    execution_time: int
    success: bool
    state: str
    statements_total: int
    statements_done: int
    statement_checksums: list[str]  # legacy rows only
    error: str | None
    statements_digest: str | None = None


# Milliseconds since the row went in_progress, computed by the server when the write runs.
_ELAPSED_MS = "GREATEST(0, TIMESTAMPDIFF(MICROSECOND, installed_on, CURRENT_TIMESTAMP(6)) DIV 1000)"


def text_literal(value: str | None) -> str:
    """A string literal whatever the session's character set and sql_mode."""
    if value is None:
        return "NULL"
    if not value:
        return "''"
    return "_utf8mb4 X'" + value.encode("utf-8", "surrogateescape").hex() + "'"


def statements_digest(statements: Iterable[Statement]) -> str:
    """sha256 over the fingerprints of `statements` (comments and layout excluded)."""
    digest = hashlib.sha256()
    for statement in statements:
        digest.update(as_bytes(fingerprint(statement.sql)))
        digest.update(b"\0")
    return digest.hexdigest()


def qualified_table(database: str) -> str:
    return f"`{database.replace('`', '``')}`.`{TABLE}`"


def _cut(text: str, limit: int = 60000) -> str:
    """At most `limit` bytes of UTF-8 (a TEXT column holds 65,535 bytes)."""
    raw = text.encode("utf-8", "replace")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


class History:
    """Reads history and builds its writes. `conn` is the engine's control connection; the
    SQL the *_sql methods return is sent by the engine on the session that runs the script."""

    def __init__(self, conn: pymysql.connections.Connection, database: str, installed_by: str):
        self.conn = conn
        self.table = qualified_table(database)
        self.installed_by = installed_by[:100]
        self.cursor = conn.cursor()
        self.next_rank = 1
        self.has_digest = True

    def read(self, create: bool = True, upgrade: bool = False) -> list[HistoryRow]:
        """Every row in rank order: the run's one history read (creates the table if absent;
        with `upgrade`, adds the digest column to a table from before it)."""
        try:
            self.cursor.execute(self._select(digest=True))
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] == ER_NO_SUCH_TABLE:
                if create:
                    self.cursor.execute(CREATE_TABLE.format(table=self.table))
                self.next_rank = 1
                return []
            if exc.args[0] != ER_BAD_FIELD:
                raise
            # A history table from before statement digests.
            self.has_digest = False
            self.cursor.execute(self._select(digest=False))
        records = self.cursor.fetchall()
        if upgrade and not self.has_digest:
            self.cursor.execute(ADD_DIGEST.format(table=self.table))
            self.has_digest = True
        rows = [
            HistoryRow(
                installed_rank=r[0],
                version=r[1],
                description=r[2],
                type=r[3],
                script=r[4],
                checksum=r[5],
                installed_by=r[6],
                installed_on=r[7],
                execution_time=r[8],
                success=bool(r[9]),
                state=r[10],
                statements_total=r[11],
                statements_done=r[12],
                statement_checksums=r[13].split() if r[13] else [],
                error=r[14],
                statements_digest=r[15] if len(r) > 15 else None,
            )
            for r in records
        ]
        self.next_rank = (rows[-1].installed_rank + 1) if rows else 1
        return rows

    def _select(self, digest: bool) -> str:
        # Applied rows' per-statement lists (history before digests: up to megabytes each)
        # and errors are not needed: every run reads every row, so keep them out of it.
        return (
            "SELECT installed_rank, version, description, type, script, checksum, "
            "installed_by, CAST(installed_on AS CHAR), execution_time, success, state, "
            "statements_total, statements_done, "
            f"IF(state = '{SUCCESS}', '', statement_checksums), "
            f"IF(state = '{SUCCESS}', NULL, error)"
            + (", statements_digest" if digest else "")
            + f" FROM {self.table} ORDER BY installed_rank"
        )

    def allocate_rank(self) -> int:
        """Ranks are assigned here: the run holds the migration lock, so nobody else writes
        history meanwhile (and the engine can name a row before it is written)."""
        rank = self.next_rank
        self.next_rank += 1
        return rank

    # -- writes that travel with the statements (in the script's session) -----------------
    def start_sql(self, rank: int, m: Migration, total: int) -> str:
        """INSERT of an in_progress row: statement 1 is in flight."""
        identity = ", ".join(
            text_literal(value)
            for value in (
                m.version,
                m.description[:200],
                m.kind,
                m.script,
                m.checksum,
                self.installed_by,
            )
        )
        return (
            f"INSERT INTO {self.table} (installed_rank, version, description, type, script, "
            "checksum, installed_by, state, success, statements_total, statements_done, "
            f"statement_checksums) VALUES ({int(rank)}, {identity}, '{IN_PROGRESS}', 0, "
            f"{int(total)}, 0, '')"
        )

    def resume_sql(self, rank: int, checksum: str, total: int) -> str:
        """A failed row goes back to in_progress with the fixed file's checksum (validation
        has checked that its completed statements are unchanged)."""
        return (
            f"UPDATE {self.table} SET state='{IN_PROGRESS}', success=0, "
            f"checksum={text_literal(checksum)}, statements_total={int(total)}, error=NULL, "
            f"installed_by={text_literal(self.installed_by)}, "
            f"installed_on=CURRENT_TIMESTAMP(6) WHERE installed_rank={int(rank)}"
        )

    def statement_done_sql(self, rank: int, done: int) -> str:
        """Statement number `done` completed (and statement done+1 is now in flight): the
        hot path, a one-integer update."""
        return (
            f"UPDATE {self.table} SET statements_done={int(done)} WHERE installed_rank={int(rank)}"
        )

    def finish_sql(self, rank: int, done: int) -> str:
        """The last statement completed: the row says success (one write). The server
        computes execution_time, as this write may be queued before the statements run."""
        return (
            f"UPDATE {self.table} SET state='{SUCCESS}', success=1, statements_done={int(done)}, "
            f"execution_time={_ELAPSED_MS} WHERE installed_rank={int(rank)}"
        )

    # -- writes on the control connection --------------------------------------------------
    def write(self, sql: str) -> None:
        self.cursor.execute(sql)

    def fail(self, rank: int, done: int, digest: str | None, error: str) -> None:
        self.cursor.execute(
            f"UPDATE {self.table} SET state=%s, success=0, statements_done=%s, "
            "statements_digest=%s, statement_checksums='', error=%s, "
            f"execution_time={_ELAPSED_MS} WHERE installed_rank=%s",
            (FAILED, done, digest, _cut(error), rank),
        )

    def set_state(
        self,
        rank: int,
        state: str,
        done: int,
        *,
        digest: str | None,
        legacy_checksums: list[str] | None = None,
        error: str | None,
    ) -> None:
        """Used by `repair` to resolve an interrupted row."""
        self.cursor.execute(
            f"UPDATE {self.table} SET state=%s, success=%s, statements_done=%s, "
            + ("statements_digest=%s, " if self.has_digest else "")
            + "statement_checksums=%s, error=%s WHERE installed_rank=%s",
            (
                state,
                1 if state == SUCCESS else 0,
                done,
                *((digest,) if self.has_digest else ()),
                "".join(c + " " for c in legacy_checksums or ()),
                error,
                rank,
            ),
        )

    def delete(self, rank: int) -> None:
        self.cursor.execute(f"DELETE FROM {self.table} WHERE installed_rank=%s", (rank,))

    def realign(self, rank: int, checksum: str) -> None:
        self.cursor.execute(
            f"UPDATE {self.table} SET checksum=%s WHERE installed_rank=%s", (checksum, rank)
        )
