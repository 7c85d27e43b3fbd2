"""The history table, kept in the target schema (the connection's database), always referred
to by its qualified name so a script's `USE other` cannot move it.

One row per application of a migration. Its `state` walks in_progress -> success | failed;
`statements_done` counts the statements known complete and `statement_checksums` holds the
sha256 of every statement as sent (the first `statements_done` of them completed), so a
failed migration can resume at the failed statement once fixed. The server commits
`in_progress` with statements_done = k BEFORE it runs statement k+1 (the write travels in the
same packet, just ahead of it), so a session lost mid-migration leaves exactly one in-flight
statement to resolve (`repair`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import pymysql

from migrator.discovery import Migration

TABLE = "schema_history"
ER_NO_SUCH_TABLE = 1146

IN_PROGRESS = "in_progress"
FAILED = "failed"
SUCCESS = "success"

COLUMNS = (
    "installed_rank, version, description, type, script, checksum, installed_by, "
    "installed_on, execution_time, success, state, statements_total, statements_done, "
    "statement_checksums, error"
)

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
  statement_checksums MEDIUMTEXT NOT NULL COMMENT 'sha256 of each statement as applied',
  error TEXT NULL,
  KEY idx_schema_history_script (script)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""


@dataclass
class HistoryRow:
    installed_rank: int
    version: str | None
    description: str
    type: str
    script: str
    checksum: str
    installed_by: str
    installed_on: datetime.datetime | None
    execution_time: int
    success: bool
    state: str
    statements_total: int
    statements_done: int
    statement_checksums: list[str]
    error: str | None


# Milliseconds since the row went in_progress, computed by the server when the write runs.
_ELAPSED_MS = "GREATEST(0, TIMESTAMPDIFF(MICROSECOND, installed_on, CURRENT_TIMESTAMP(6)) DIV 1000)"


def _joined(checksums: list[str]) -> str:
    return "".join(c + " " for c in checksums)


def qualified_table(database: str) -> str:
    return f"`{database.replace('`', '``')}`.`{TABLE}`"


class History:
    """Reads and writes the history table over the migrator's single connection."""

    def __init__(self, conn: pymysql.connections.Connection, database: str, installed_by: str):
        self.conn = conn
        self.table = qualified_table(database)
        self.installed_by = installed_by[:100]
        self.cursor = conn.cursor()
        self.next_rank = 1

    def read(self, create: bool = True) -> list[HistoryRow]:
        """Every row in rank order: the run's one history read (creates the table if absent)."""
        try:
            self.cursor.execute(f"SELECT {COLUMNS} FROM {self.table} ORDER BY installed_rank")
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] != ER_NO_SUCH_TABLE:
                raise
            if create:
                self.cursor.execute(CREATE_TABLE.format(table=self.table))
            self.next_rank = 1
            return []
        rows: list[HistoryRow] = []
        for r in self.cursor.fetchall():
            rows.append(
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
                )
            )
        self.next_rank = (rows[-1].installed_rank + 1) if rows else 1
        return rows

    # The writes that precede a statement are returned as SQL so the engine can send each one
    # in the same packet as the statement it announces (one round trip instead of two; the
    # server still runs and commits the history write first).
    def allocate_rank(self) -> int:
        """Ranks are assigned here: the run holds the migration lock, so nobody else writes
        history meanwhile (and the engine can name a row before it is written)."""
        rank = self.next_rank
        self.next_rank += 1
        return rank

    def start_sql(self, rank: int, m: Migration, statement_checksums: list[str]) -> str:
        """INSERT of an in_progress row. It records the checksum of every statement as sent,
        so `statements_done` alone says which ones completed."""
        identity = ", ".join(
            self.conn.escape(value)
            for value in (
                m.version,
                m.description[:200],
                m.kind,
                m.script,
                m.checksum,
                self.installed_by,
            )
        )
        # Checksums are hex digits and spaces, the state a constant: no escaping needed.
        return (
            f"INSERT INTO {self.table} (installed_rank, version, description, type, script, "
            "checksum, installed_by, state, success, statements_total, statements_done, "
            f"statement_checksums) VALUES ({int(rank)}, {identity}, '{IN_PROGRESS}', 0, "
            f"{len(statement_checksums)}, 0, '{_joined(statement_checksums)}')"
        )

    def resume_sql(self, rank: int, checksum: str, statement_checksums: list[str]) -> str:
        """A failed row goes back to in_progress with the fixed file's checksums (validation
        has checked that its completed statements are unchanged)."""
        return self.cursor.mogrify(
            f"UPDATE {self.table} SET state=%s, success=0, checksum=%s, statements_total=%s, "
            "statement_checksums=%s, error=NULL, installed_by=%s, "
            "installed_on=CURRENT_TIMESTAMP(6) WHERE installed_rank=%s",
            (
                IN_PROGRESS,
                checksum,
                len(statement_checksums),
                _joined(statement_checksums),
                self.installed_by,
                rank,
            ),
        )

    def statement_done_sql(self, rank: int, done: int) -> str:
        """Statement number `done` completed (and statement done+1 is now in flight): the
        hot path, a one-integer update."""
        return (
            f"UPDATE {self.table} SET statements_done={int(done)} WHERE installed_rank={int(rank)}"
        )

    def write(self, sql: str) -> None:
        self.cursor.execute(sql)

    def finish_sql(self, rank: int, done: int) -> str:
        """The last statement completed: the row says success (one write). The server
        computes execution_time, as this write may be queued before the statements run."""
        return (
            f"UPDATE {self.table} SET state='{SUCCESS}', success=1, statements_done={int(done)}, "
            f"execution_time={_ELAPSED_MS}, error=NULL WHERE installed_rank={int(rank)}"
        )

    def fail(self, rank: int, done: int, checksums: list[str], error: str) -> None:
        self.cursor.execute(
            f"UPDATE {self.table} SET state=%s, success=0, statements_done=%s, "
            "statement_checksums=%s, error=%s, execution_time=GREATEST(0, "
            "TIMESTAMPDIFF(MICROSECOND, installed_on, CURRENT_TIMESTAMP(6)) DIV 1000) "
            "WHERE installed_rank=%s",
            (FAILED, done, _joined(checksums), error[:60000], rank),
        )

    def set_state(
        self, rank: int, state: str, done: int, checksums: list[str], error: str | None
    ) -> None:
        """Used by `repair` to resolve an interrupted row."""
        self.cursor.execute(
            f"UPDATE {self.table} SET state=%s, success=%s, statements_done=%s, "
            "statement_checksums=%s, error=%s WHERE installed_rank=%s",
            (
                state,
                1 if state == SUCCESS else 0,
                done,
                _joined(checksums),
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
