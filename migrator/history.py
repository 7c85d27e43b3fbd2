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
_SEP = "\x1f"  # between a row's fields in the history read
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
  statement_checksums MEDIUMTEXT NOT NULL COMMENT 'older rows: sha256 of each statement',
  error TEXT NULL,
  statements_digest CHAR(64) NULL COMMENT 'sha256 over statements 1..statements_done (failed rows)',
  in_flight VARCHAR(20) NULL COMMENT 'transaction: what runs after statements_done rolls back',
  KEY idx_schema_history_script (script)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
# History tables created before these columns get them (an instant ADD COLUMN on MySQL 8
# and MariaDB >= 10.3), under the migration lock.
ADD_COLUMNS = (
    "ALTER TABLE {table} ADD COLUMN statements_digest CHAR(64) NULL "
    "COMMENT 'sha256 over statements 1..statements_done (failed rows)', "
    "ADD COLUMN in_flight VARCHAR(20) NULL "
    "COMMENT 'transaction: what runs after statements_done rolls back'"
)
TRANSACTION = "transaction"  # in_flight: a lost session's work was rolled back


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
    in_flight: str | None = None


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
        self._installed_by = text_literal(self.installed_by)
        self._identities: dict[str, str] = {}
        self.cursor = conn.cursor()
        self.next_rank = 1
        self.has_digest = True

    def read(
        self, create: bool = True, upgrade: bool = False, full: bool = True
    ) -> list[HistoryRow]:
        """Every row in rank order: the run's one history read (creates the table if absent;
        with `upgrade`, adds the columns a table from before them lacks). `full`: also what
        only `info` shows (description, who, when, how long)."""
        try:
            self.cursor.execute(self._select(full))
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] != ER_NO_SUCH_TABLE:
                raise
            if create:
                self.cursor.execute(CREATE_TABLE.format(table=self.table))
            self.next_rank = 1
            return []
        rows = [self._row(value.split(_SEP), full) for (value,) in self.cursor.fetchall()]
        self._unfinished(rows, upgrade)
        self.next_rank = (rows[-1].installed_rank + 1) if rows else 1
        return rows

    def _select(self, full: bool) -> str:
        # One string per row: thousands of rows are read by every run, and the driver's cost
        # is per column. Rows not applied get their other columns from _unfinished.
        columns = "installed_rank, IFNULL(version, ''), type, script, checksum, state, success, "
        columns += "statements_total, statements_done"
        if full:
            columns += ", description, installed_by, CAST(installed_on AS CHAR), execution_time"
        return f"SELECT CONCAT_WS(CHAR(31), {columns}) FROM {self.table} ORDER BY installed_rank"

    @staticmethod
    def _row(f: list[str], full: bool) -> HistoryRow:
        return HistoryRow(
            installed_rank=int(f[0]),
            version=f[1] or None,
            type=f[2],
            script=f[3],
            checksum=f[4],
            state=f[5],
            success=f[6] == "1",
            statements_total=int(f[7]),
            statements_done=int(f[8]),
            description=f[9] if full else "",
            installed_by=f[10] if full else "",
            installed_on=f[11] if full else None,
            execution_time=int(f[12]) if full else 0,
            statement_checksums=[],
            error=None,
        )

    def _unfinished(self, rows: list[HistoryRow], upgrade: bool) -> None:
        """The columns only failed and in-progress rows need (a table from before digests
        has a per-statement checksum list instead, up to megabytes a row)."""
        try:
            self.cursor.execute(
                "SELECT installed_rank, statement_checksums, error, statements_digest, in_flight "
                f"FROM {self.table} WHERE state <> '{SUCCESS}'"
            )
            found = {r[0]: r[1:] for r in self.cursor.fetchall()}
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] != ER_BAD_FIELD:
                raise
            self.has_digest = False
            self.cursor.execute(
                "SELECT installed_rank, statement_checksums, error, NULL, NULL "
                f"FROM {self.table} WHERE state <> '{SUCCESS}'"
            )
            found = {r[0]: r[1:] for r in self.cursor.fetchall()}
        if upgrade and not self.has_digest:
            self.cursor.execute(ADD_COLUMNS.format(table=self.table))
            self.has_digest = True
        if not found:
            return
        for row in rows:
            extra = found.get(row.installed_rank)
            if extra is not None:
                checksums, row.error, row.statements_digest, row.in_flight = extra
                row.statement_checksums = checksums.split() if checksums else []

    def allocate_rank(self) -> int:
        """Ranks are assigned here: the run holds the migration lock, so nobody else writes
        history meanwhile (and the engine can name a row before it is written)."""
        rank = self.next_rank
        self.next_rank += 1
        return rank

    # -- writes that travel with the statements (in the script's session) -----------------
    def applied_sql(self, applied: list[tuple[int, Migration, int]]) -> str:
        """One INSERT of success rows (rank, migration, statements): migrations applied whole
        inside one transaction, so nothing of them is ever in progress for anyone else."""
        values = ", ".join(
            f"({int(rank)}, {self._identity(m)}, '{SUCCESS}', 1, {int(total)}, {int(total)}, '')"
            for rank, m, total in applied
        )
        return (
            f"INSERT INTO {self.table} (installed_rank, version, description, type, script, "
            "checksum, installed_by, state, success, statements_total, statements_done, "
            f"statement_checksums) VALUES {values}"
        )

    def _identity(self, m: Migration) -> str:
        return (
            ", ".join(
                text_literal(value)
                for value in (m.version, m.description[:200], m.kind, m.script, m.checksum)
            )
            + ", "
            + self._installed_by
        )

    def start_sql(self, rank: int, m: Migration, total: int) -> str:
        """INSERT of an in_progress row: statement 1 is in flight."""
        identity = self._identity(m)
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
            f"execution_time={_ELAPSED_MS}, in_flight=NULL WHERE installed_rank={int(rank)}"
        )

    def in_transactions_sql(self, rank: int, done: int | None = None) -> str:
        """From here the statements run in transactions with their progress: a lost session
        rolls its work back, so the next run resumes after statement `done` by itself."""
        count = f"statements_done={int(done)}, " if done is not None else ""
        return (
            f"UPDATE {self.table} SET {count}in_flight='{TRANSACTION}' "
            f"WHERE installed_rank={int(rank)}"
        )

    def one_at_a_time_sql(self, rank: int, done: int) -> str:
        """Statement `done` completed and the next runs on its own again (the hot path's write,
        clearing in_flight once)."""
        return (
            f"UPDATE {self.table} SET statements_done={int(done)}, in_flight=NULL "
            f"WHERE installed_rank={int(rank)}"
        )

    # -- writes on the control connection --------------------------------------------------
    def write(self, sql: str) -> None:
        self.cursor.execute(sql)

    def fail(self, rank: int, done: int, digest: str | None, error: str) -> None:
        self.cursor.execute(
            f"UPDATE {self.table} SET state=%s, success=0, statements_done=%s, "
            "statements_digest=%s, statement_checksums='', error=%s, in_flight=NULL, "
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
            + ("statements_digest=%s, in_flight=NULL, " if self.has_digest else "")
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
