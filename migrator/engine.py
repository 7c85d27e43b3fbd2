"""The migration engine: validate files against history, then apply what is pending.

One run = one connection, one named lock, one history read. The server commits a history
row saying statements 1..k are done before it runs statement k+1 (the writes travel in the
migration's packet, between its statements), so history never claims success for work that
did not finish. See docs/migrations.md for the contract.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pymysql
from pymysql.constants import SERVER_STATUS

from migrator import lock
from migrator.connection import ConnectionSettings, connect
from migrator.discovery import Migration, MigrationSet, version_key
from migrator.errors import (
    ConfigurationError,
    InterruptedMigrationError,
    MigrationError,
    StatementFailed,
    ValidationError,
)
from migrator.history import FAILED, IN_PROGRESS, SUCCESS, History, HistoryRow
from migrator.snapshot import SnapshotSettings, create_pre_migration_snapshot
from migrator.splitter import SplitError, Statement

log = logging.getLogger("migrator")

ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213
LOST_CONNECTION = {2006, 2013, 2055}
REPAIR_COMMAND = "scripts/migrate repair"


@dataclass
class MigrationOptions:
    out_of_order: bool = False
    # The documented override for applied-file-changed/missing: report, do not fail.
    ignore_changed: bool = False
    lock_name: str | None = None  # default derived from database name
    lock_wait_seconds: float = 60.0  # bounded GET_LOCK wait
    statement_lock_wait_seconds: int = 10  # session lock_wait_timeout for metadata locks
    snapshot: SnapshotSettings | None = None  # optional pre-migration RDS snapshot
    statement_retries: int = 4  # extra attempts of a statement after a lock wait timeout
    statement_retry_backoff: float = 1.0  # seconds before the first retry; doubles each time
    # Session wait_timeout: if this process's host vanishes without closing the connection,
    # the server drops the silent session, and the migration lock with it, after this long
    # (rather than the server's default of 8 hours). Idle gaps longer than this (waiting for
    # a snapshot) are covered by pings.
    idle_timeout_seconds: int = 300
    # A time.monotonic() value after which the run sends no new packet, so starts no new
    # migration and no new part of one (the in-VPC function's soft deadline, vpcrunner). Each
    # run sends at least one packet, so repeated runs always progress. A stop inside a
    # migration is recorded as a failed migration is (statements_done, their checksums), so
    # the next run resumes it there; MigrateResult.stopped says where.
    stop_after: float | None = None


@dataclass
class MigrateResult:
    applied: list[str]  # scripts applied in this run, in order
    current_version: str | None  # highest applied version after the run
    snapshot_id: str | None = None
    # script -> checksum of every migration applied after the run (what `applied_checksums`
    # would read back), so a caller needs no second connection and history read.
    checksums: dict[str, str] = field(default_factory=dict)
    stopped: Stopped | None = None  # set when `stop_after` passed before the work was done


@dataclass(frozen=True)
class Stopped:
    """Where a run stopped at `stop_after`: the next statement to run (1-based) of `script`."""

    script: str
    statement: int
    statements_total: int


class _Paused(Exception):
    def __init__(self, stopped: Stopped):
        self.stopped = stopped


@dataclass
class InfoRow:
    script: str
    kind: str
    version: str | None
    description: str
    state: str  # applied | pending | failed | interrupted | changed | missing | outdated | ...
    installed_on: str | None = None
    execution_ms: int | None = None
    note: str = ""


@dataclass
class Step:
    """A migration to apply from statement index `start` (0-based); `row` when resuming."""

    migration: Migration
    statements: list[Statement]
    start: int = 0
    row: HistoryRow | None = None


@dataclass
class Assessment:
    steps: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # validation errors
    interrupted: list[str] = field(default_factory=list)  # killed runs to resolve
    file_problems: list[str] = field(default_factory=list)  # scripts that cannot be split
    info: list[InfoRow] = field(default_factory=list)
    applied: dict[str, str] = field(default_factory=dict)  # script -> checksum (success)
    current_version: str | None = None


def _split(m: Migration, problems: list[str]) -> list[Statement] | None:
    try:
        return m.statements()
    except SplitError as exc:
        problems.extend(f"{m.script}: {p}" for p in exc.problems)
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{m.script}: cannot read: {exc}")
    return None


def _interrupted_message(row: HistoryRow, statements: list[Statement] | None) -> str:
    number = row.statements_done + 1
    where = f"statement {number} of {row.statements_total}"
    if statements is not None and row.statements_done < len(statements):
        stmt = statements[row.statements_done]
        first_line = stmt.sql.splitlines()[0][:80]
        where += f" (line {stmt.line}: {first_line!r})"
    return (
        f"{row.script} was interrupted while {where} was running (the run that started it "
        f"died, e.g. killed). The statement may or may not have taken effect: check, then run "
        f"`{REPAIR_COMMAND} --mark-done` if it did, or `{REPAIR_COMMAND} --retry` if it did not "
        "(the next migrate resumes after/at it)"
    )


def latest_rows(rows: list[HistoryRow]) -> dict[str, HistoryRow]:
    """Each script's latest history row (rows come in installed_rank order)."""
    return {row.script: row for row in rows}


def assess(
    rows: list[HistoryRow], migrations: MigrationSet, options: MigrationOptions
) -> Assessment:
    """Compare files with history (one read) and decide what to apply; pure, no I/O but files."""
    a = Assessment()
    latest = latest_rows(rows)
    applied_versions: dict[tuple[int, ...], str] = {}
    highest: tuple[tuple[int, ...], str] | None = None
    for row in latest.values():
        if row.state == SUCCESS:
            a.applied[row.script] = row.checksum
            if row.version is not None:
                key = version_key(row.version)
                applied_versions[key] = row.script
                if highest is None or key > highest[0]:
                    highest = (key, row.version)
    a.current_version = highest[1] if highest else None

    for m in migrations:
        row = latest.get(m.script)
        info = InfoRow(m.script, m.kind, m.version, m.description, "pending")
        a.info.append(info)
        if row is not None:
            info.installed_on = str(row.installed_on) if row.installed_on else None
            info.execution_ms = row.execution_time
        if row is None or (
            row.state == SUCCESS and m.kind == "repeatable" and row.checksum != m.checksum
        ):
            if row is not None:
                info.state = "outdated"
                info.note = "changed since last applied; will be re-applied"
            if m.kind == "versioned":
                key = m.version_key
                if key in applied_versions:
                    a.problems.append(
                        f"{m.script}: version {m.version} is already applied as "
                        f"{applied_versions[key]}"
                    )
                    info.state = "duplicate"
                    continue
                if highest is not None and key < highest[0] and not options.out_of_order:
                    a.problems.append(
                        f"{m.script}: version {m.version} is lower than the highest applied "
                        f"version {highest[1]}; allow it with out_of_order "
                        "(--out-of-order) or give it a higher version"
                    )
                    info.state = "out of order"
                    continue
            statements = _split(m, a.file_problems)
            if statements is not None:
                a.steps.append(Step(m, statements))
            continue
        if row.state == SUCCESS:
            if row.checksum == m.checksum:
                info.state = "applied"
            elif options.ignore_changed:
                info.state = "changed"
                info.note = "file changed after it was applied (ignored by override)"
            else:
                info.state = "changed"
                a.problems.append(
                    f"{m.script}: applied migration changed since it was applied "
                    f"(checksum {row.checksum[:12]} in history, {m.checksum[:12]} on disk); "
                    "restore the file, or override with ignore_changed (--ignore-changed) "
                    f"or accept the new file with `{REPAIR_COMMAND} --realign-checksums`"
                )
            continue
        statements = _split(m, a.file_problems)
        if row.state == IN_PROGRESS:
            info.state = "interrupted"
            a.interrupted.append(_interrupted_message(row, statements))
            continue
        # A failed migration: resume at the failed statement if the completed ones are intact.
        info.state = "failed"
        info.note = (row.error or "")[:200]
        if statements is None:
            continue
        done = row.statements_done
        current = [s.checksum for s in statements[:done]]
        if len(statements) < done or current != row.statement_checksums[:done]:
            changed = next(
                (
                    i
                    for i in range(min(done, len(statements)))
                    if current[i] != row.statement_checksums[i]
                ),
                min(done, len(statements)),
            )
            where = (
                f"statement {changed + 1} (line {statements[changed].line})"
                if changed < len(statements)
                else f"statement {changed + 1} (no longer in the file)"
            )
            a.problems.append(
                f"{m.script}: cannot resume: it failed at statement {done + 1} after statements "
                f"1..{done} completed, but {where} has changed since it ran. Only the failed "
                "statement and later ones may change: put the completed statements back as they "
                f"were, or undo their effects by hand and run `{REPAIR_COMMAND} --restart`"
            )
            continue
        a.steps.append(Step(m, statements, start=done, row=row))

    files = migrations.by_script
    for script, row in latest.items():
        if script in files:
            continue
        state = "missing" if row.state == SUCCESS else row.state
        a.info.append(
            InfoRow(
                script,
                row.type,
                row.version,
                row.description,
                state,
                str(row.installed_on) if row.installed_on else None,
                row.execution_time,
            )
        )
        if row.state == SUCCESS:
            if not options.ignore_changed:
                a.problems.append(
                    f"{script}: applied migration's file is missing; restore it, or override "
                    "with ignore_changed (--ignore-changed)"
                )
        elif row.state == IN_PROGRESS:
            a.interrupted.append(_interrupted_message(row, None))
        else:
            a.problems.append(
                f"{script}: failed migration's file is missing; restore it, or undo its partial "
                f"effects by hand and run `{REPAIR_COMMAND} --restart`"
            )
    return a


# Statements that return exactly one result, so the history write that follows one in the
# same packet can be told apart from it (a CALL may return several).
_SINGLE_RESULT_KEYWORDS = frozenset(
    {
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
    }
)


def _in_transaction(conn: pymysql.connections.Connection) -> bool:
    """Whether the session has an open transaction (from the last OK/EOF packet's status)."""
    status = getattr(conn, "server_status", 0) or 0
    return bool(status & SERVER_STATUS.SERVER_STATUS_IN_TRANS)


def _single_result(stmt: Statement) -> bool:
    return stmt.delimiter == ";" and stmt.keyword in _SINGLE_RESULT_KEYWORDS


@dataclass
class _Progress:
    """What the engine knows about a migration while it runs."""

    committed: int  # statements whose effects are committed
    done_checksums: list[str]
    switched_schema: bool = False

    def completed(self, conn: pymysql.connections.Connection, stmt: Statement) -> None:
        self.done_checksums.append(stmt.checksum)
        if not _in_transaction(conn):
            self.committed = len(self.done_checksums)
        if stmt.keyword == "USE":
            self.switched_schema = True


# SQL characters per packet (the progress writes between statements not counted, a few dozen
# bytes each): far below max_allowed_packet (16 MiB on MariaDB, 64 MiB on RDS MySQL 8) even
# at 4 bytes a character. A single larger statement still goes, alone.
_PACKET_BYTES = 1 << 20


class _HistoryWriteFailed(Exception):
    """The history write sent ahead of a statement failed (so the statement did not run)."""


@contextmanager
def _kept_alive(conn: pymysql.connections.Connection, every: float) -> Iterator[None]:
    """Ping the (otherwise unused) connection every `every` seconds from a thread, so a long
    wait outside the database does not reach the session's wait_timeout."""
    stop = threading.Event()

    def ping() -> None:
        while not stop.wait(every):
            try:
                conn.ping(reconnect=False)
            except pymysql.err.Error:
                return  # gone: the next statement reports it

    pinger = threading.Thread(target=ping, name="migrator-keepalive", daemon=True)
    pinger.start()
    try:
        yield
    finally:
        stop.set()
        pinger.join()


def _server_error(exc: pymysql.err.MySQLError) -> str:
    if len(exc.args) >= 2:
        return f"server error {exc.args[0]}: {exc.args[1]}"
    return str(exc)


class Migrator:
    def __init__(
        self,
        settings: ConnectionSettings,
        migrations: MigrationSet,
        options: MigrationOptions | None = None,
    ):
        self.settings = settings
        self.migrations = migrations
        self.options = options or MigrationOptions()
        self.lock_name = self.options.lock_name or lock.default_lock_name(settings.database)
        self._packets_sent = 0  # in the current run; see MigrationOptions.stop_after

    # -- session -------------------------------------------------------------------------
    @contextmanager
    def _session(self, locked: bool) -> Iterator[tuple[pymysql.connections.Connection, History]]:
        # Multi-statement packets: each history write travels with the statement it announces.
        conn = connect(self.settings, multi_statements=True)
        try:
            with conn.cursor() as cur:
                wait = int(self.options.statement_lock_wait_seconds)
                cur.execute(
                    "SET SESSION lock_wait_timeout = %s, innodb_lock_wait_timeout = %s, "
                    "wait_timeout = %s",
                    (wait, wait, int(self.options.idle_timeout_seconds)),
                )
            if locked:
                lock.acquire(conn, self.lock_name, self.options.lock_wait_seconds)
            try:
                yield conn, History(conn, self.settings.database, self.settings.user)
            finally:
                if locked and conn.open:
                    # The lock dies with the connection anyway.
                    with contextlib.suppress(pymysql.err.MySQLError):
                        lock.release(conn, self.lock_name)
        except pymysql.err.MySQLError as exc:
            # A server error outside a migration's statements (session setup, lock, history
            # read or write; statements' own errors are StatementFailed): one readable
            # MigrationError for the CLI and the provider, never a raw pymysql traceback.
            raise MigrationError(
                f"database {self.settings.database!r} on {self.settings.address}: "
                f"{_server_error(exc)}"
            ) from None
        finally:
            if conn.open:
                conn.close()

    def _assess(self, history: History, create: bool) -> Assessment:
        return assess(history.read(create=create), self.migrations, self.options)

    # -- read-only -----------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValidationError (or ConfigurationError) listing all problems; writes nothing."""
        with self._session(locked=False) as (_, history):
            a = self._assess(history, create=False)
        problems = a.interrupted + a.problems
        if problems:
            raise ValidationError(problems)
        if a.file_problems:
            raise ConfigurationError(a.file_problems)

    def info(self) -> list[InfoRow]:
        with self._session(locked=False) as (_, history):
            return self._assess(history, create=False).info

    def pending(self) -> list[Migration]:
        with self._session(locked=False) as (_, history):
            return [s.migration for s in self._assess(history, create=False).steps]

    def plan(self) -> list[Step]:
        """What migrate would run (statements from the resume point), without running it."""
        with self._session(locked=False) as (_, history):
            a = self._assess(history, create=False)
        self._raise_for(a)
        return a.steps

    def applied_checksums(self) -> dict[str, str]:
        """script -> checksum of every applied migration, from history alone: unlike a full
        assessment this reads and splits no file (it serves `pulumi refresh`)."""
        with self._session(locked=False) as (_, history):
            rows = history.read(create=False)
        return {
            script: row.checksum
            for script, row in latest_rows(rows).items()
            if row.state == SUCCESS
        }

    @staticmethod
    def _raise_for(a: Assessment) -> None:
        if a.interrupted:
            raise InterruptedMigrationError(
                a.interrupted + a.problems, heading="a previous run was interrupted"
            )
        if a.problems:
            raise ValidationError(a.problems)
        if a.file_problems:
            raise ConfigurationError(a.file_problems)

    # -- migrate -------------------------------------------------------------------------
    def migrate(self) -> MigrateResult:
        with self._session(locked=True) as (conn, history):
            a = self._assess(history, create=True)
            self._raise_for(a)
            result = MigrateResult(
                applied=[], current_version=a.current_version, checksums=dict(a.applied)
            )
            if not a.steps:
                return result
            if self.options.snapshot is not None:
                target = max(
                    (s.migration for s in a.steps if s.migration.version is not None),
                    key=lambda m: m.version_key,
                    default=None,
                )
                with _kept_alive(conn, self.options.idle_timeout_seconds / 3):
                    result.snapshot_id = create_pre_migration_snapshot(
                        self.options.snapshot, target.version if target else a.current_version
                    )
                log.info("snapshot %s is available", result.snapshot_id)
            highest = version_key(a.current_version) if a.current_version else None
            ranks = [
                s.row.installed_rank if s.row is not None else history.allocate_rank()
                for s in a.steps
            ]
            deferred: list[str] = []  # a success write still to send (see _apply)
            self._packets_sent = 0
            for step, rank in zip(a.steps, ranks, strict=True):
                if self._packets_sent and self._out_of_time():
                    for sql in deferred:
                        history.write(sql)
                    statements = len(step.statements)
                    result.stopped = Stopped(step.migration.script, step.start + 1, statements)
                    return result
                try:
                    deferred = self._apply(conn, history, step, rank, deferred)
                except _Paused as paused:
                    result.stopped = paused.stopped
                    return result
                m = step.migration
                result.applied.append(m.script)
                result.checksums[m.script] = m.checksum
                if m.version is not None and (highest is None or m.version_key > highest):
                    highest = m.version_key
                    result.current_version = m.version
            for sql in deferred:
                history.write(sql)
            return result

    def _apply(
        self,
        conn: pymysql.connections.Connection,
        history: History,
        step: Step,
        rank: int,
        deferred: list[str],
    ) -> list[str]:
        """Apply one migration, normally as ONE packet:
        `start; stmt 1; done=1; stmt 2; done=2; ...; stmt n; success`.
        Every history write sits between the statements it reports on; the server runs and
        commits each in turn and stops at the first error, so history is exact whatever
        happens to this process, at one round trip per migration (the mysql client needs one
        per statement). A packet also ends after a statement that may return several results
        (CALL, or a custom-delimiter body), whose results are read to the end, or at
        _PACKET_BYTES; the migration goes on in the next packet, led by its progress write.

        Consequence, documented: a SIGKILLed migrator does not stop the server mid-file. It
        finishes the packet it was sent, recording each statement, and stops at the migration
        boundary: no spurious "interrupted" state to repair. What interrupts a statement is
        the server losing the session (KILL, failover, crash), which `repair` resolves.

        `deferred`: writes left over from the previous migration (its success write, when its
        last statement could not carry one). Returns this migration's leftover writes."""
        m, statements = step.migration, step.statements
        total = len(statements)
        checksums = [st.checksum for st in statements]
        if step.row is None:
            first = history.start_sql(rank, m, checksums)
            done_checksums: list[str] = []
        else:
            first = history.resume_sql(rank, m.checksum, checksums)
            done_checksums = list(step.row.statement_checksums[: step.start])
            log.info("%s: resuming at statement %d", m.script, step.start + 1)
        announce = [*deferred, first]
        if total == step.start:
            for sql in announce:
                history.write(sql)
            return [history.finish_sql(rank, total)]
        progress = _Progress(committed=step.start, done_checksums=done_checksums)
        finish: list[str] = []
        cur = conn.cursor()
        index = step.start
        while index < total:
            if (
                index > step.start
                and self._out_of_time()
                and progress.committed == index
                and not progress.switched_schema
            ):
                # Between two packets, outside the script's own transaction: record where it
                # stopped the way a failure is recorded, so the next run resumes here.
                history.fail(
                    rank,
                    index,
                    progress.done_checksums[:index],
                    f"paused before statement {index + 1} of {total}: the run reached its "
                    "deadline (not an error; the next migrate resumes here)",
                )
                log.info("%s: paused before statement %d of %d", m.script, index + 1, total)
                raise _Paused(Stopped(m.script, index + 1, total))
            self._packets_sent += 1
            parts: list[tuple[int | None, str]] = [(None, sql) for sql in announce]
            size = sum(len(sql) for sql in announce)
            end = index
            while end < total:
                if end > index:
                    if size + len(statements[end].sql) > _PACKET_BYTES:
                        break
                    parts.append((None, history.statement_done_sql(rank, end)))
                parts.append((end, statements[end].sql))
                size += len(statements[end].sql)
                end += 1
                if not _single_result(statements[end - 1]):
                    break  # its results are read to the end: nothing may follow it
            closes = end == total and _single_result(statements[-1])
            if closes:
                parts.append((None, history.finish_sql(rank, total)))
            try:
                failed = self._send(
                    conn, cur, parts, lambda j: progress.completed(conn, statements[j])
                )
            except _HistoryWriteFailed as exc:
                raise MigrationError(
                    f"{m.script}: cannot record progress in the history table, so the "
                    f"statements after it were not run: {exc}"
                ) from None
            if failed is not None:
                j, exc = failed
                try:
                    self._retry(conn, cur, statements[j], exc)
                except pymysql.err.MySQLError as final:
                    self._record_failure(
                        conn,
                        history,
                        rank,
                        m,
                        j,
                        statements[j],
                        progress.committed,
                        progress.done_checksums,
                        final,
                    )
                progress.completed(conn, statements[j])
                closes = False
                end = j + 1  # the server ran nothing after the failed statement
            index = end
            if index < total:
                announce = [history.statement_done_sql(rank, index)]
            elif not closes:
                finish = [history.finish_sql(rank, total)]
        if _in_transaction(conn) or progress.switched_schema:
            # A script that left its transaction open is committed together with its history;
            # one that switched schema gets the target database back.
            for sql in finish:
                history.write(sql)
            finish = []
            if _in_transaction(conn):
                conn.commit()
            if progress.switched_schema:
                conn.select_db(self.settings.database)
        log.info("%s: applied %d statement(s)", m.script, total - step.start)
        return finish

    def _out_of_time(self) -> bool:
        stop_after = self.options.stop_after
        return stop_after is not None and time.monotonic() >= stop_after

    @staticmethod
    def _send(
        conn: pymysql.connections.Connection,
        cur: pymysql.cursors.Cursor,
        parts: list[tuple[int | None, str]],
        on_statement_done: Callable[[int], None],
    ) -> tuple[int, pymysql.err.MySQLError] | None:
        """Send the parts (history writes: index None; statements: their index) as one
        packet and read the results in order. Returns (index, error) of a failed statement
        (the server ran nothing after it), or None."""
        # ";" without a newline before a statement keeps the server's line numbers right.
        packet = ";".join(sql for _, sql in parts)
        for position, (statement_index, _) in enumerate(parts):
            try:
                if position == 0:
                    cur.execute(packet)
                else:
                    cur.nextset()
                if statement_index is not None and position == len(parts) - 1:
                    while cur.nextset():  # a lone CALL may return several results
                        pass
            except pymysql.err.MySQLError as exc:
                if statement_index is None:
                    raise _HistoryWriteFailed(_server_error(exc)) from None
                return statement_index, exc
            if statement_index is not None:
                on_statement_done(statement_index)
        return None

    def _retry(
        self,
        conn: pymysql.connections.Connection,
        cur: pymysql.cursors.Cursor,
        stmt: Statement,
        error: pymysql.err.MySQLError,
    ) -> None:
        """Re-run a statement that timed out waiting for a lock, alone, with backoff, a
        bounded number of times; re-raise anything else (or the last failure)."""
        delay = self.options.statement_retry_backoff
        attempt = 1
        while True:
            code = error.args[0] if error.args else 0
            in_trans = _in_transaction(conn)
            retriable = code == ER_LOCK_WAIT_TIMEOUT or (code == ER_LOCK_DEADLOCK and not in_trans)
            if not retriable or attempt > self.options.statement_retries:
                error.attempts = attempt  # type: ignore[attr-defined]
                raise error
            log.warning(
                "statement at line %d waited %ss for a lock (error %s); retry %d/%d in %.1fs",
                stmt.line,
                self.options.statement_lock_wait_seconds,
                code,
                attempt,
                self.options.statement_retries,
                delay,
            )
            time.sleep(delay)
            delay *= 2
            attempt += 1
            try:
                cur.execute(stmt.sql)
                while cur.nextset():
                    pass
                return
            except pymysql.err.MySQLError as exc:
                error = exc

    def _record_failure(
        self,
        conn: pymysql.connections.Connection,
        history: History,
        rank: int,
        m: Migration,
        index: int,
        stmt: Statement,
        committed: int,
        done_checksums: list[str],
        exc: pymysql.err.MySQLError,
    ) -> None:
        code = int(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else 0
        message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        note = ""
        attempts = getattr(exc, "attempts", 1)
        if code in (ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK) and attempts > 1:
            note = (
                f"gave up after {attempts} attempts, each waiting up to "
                f"{self.options.statement_lock_wait_seconds}s for the lock"
            )
        if code in LOST_CONNECTION:
            note = (
                "connection lost: history still shows this statement in flight; the next run "
                f"will ask you to resolve it with `{REPAIR_COMMAND}`"
            )
            raise StatementFailed(m.script, index + 1, stmt.line, code, message, note) from None
        done = index
        try:
            if _in_transaction(conn):
                # The script's own transaction did not complete: undo it, resume at its start.
                conn.rollback()
                done = committed
            history.fail(
                rank,
                done,
                done_checksums[:done],
                f"statement {index + 1} (line {stmt.line}): error {code}: {message}",
            )
        except pymysql.err.MySQLError:
            note = note or "the failure could not be recorded in history (connection problem)"
        if done != index:
            note = (note + "; " if note else "") + (
                f"its open transaction was rolled back; the next run resumes at statement "
                f"{done + 1}"
            )
        raise StatementFailed(m.script, index + 1, stmt.line, code, message, note) from None

    # -- repair --------------------------------------------------------------------------
    def repair(self, action: str) -> list[str]:
        """Resolve history without hand-written SQL. Actions:
        - "retry": an interrupted statement did NOT take effect; the next migrate runs it again.
        - "mark-done": an interrupted statement DID take effect; the next migrate continues after.
        - "restart": forget a failed/interrupted migration's progress (after undoing its partial
          effects by hand); the next migrate runs it from statement 1.
        - "realign-checksums": accept changed files of applied migrations as the new truth.
        Returns one message per change made.
        """
        if action not in ("retry", "mark-done", "restart", "realign-checksums"):
            raise MigrationError(f"unknown repair action {action!r}")
        messages: list[str] = []
        with self._session(locked=True) as (_, history):
            files = self.migrations.by_script
            for row in latest_rows(history.read(create=False)).values():
                m = files.get(row.script)
                if action == "realign-checksums":
                    if row.state == SUCCESS and m is not None and m.checksum != row.checksum:
                        history.realign(row.installed_rank, m.checksum)
                        messages.append(f"{row.script}: history checksum set to the file's")
                    continue
                if action == "restart":
                    if row.state in (FAILED, IN_PROGRESS):
                        history.delete(row.installed_rank)
                        messages.append(
                            f"{row.script}: progress forgotten; the next migrate runs it from "
                            "statement 1"
                        )
                    continue
                if row.state != IN_PROGRESS:
                    continue
                number = row.statements_done + 1
                if action == "retry":
                    history.set_state(
                        row.installed_rank,
                        FAILED,
                        row.statements_done,
                        row.statement_checksums,
                        f"interrupted during statement {number}; marked for retry by repair",
                    )
                    messages.append(
                        f"{row.script}: statement {number} will run again on the next migrate"
                    )
                    continue
                if m is None:
                    raise MigrationError(
                        f"{row.script}: cannot mark statement {number} done: the file is missing"
                    )
                statements = m.statements()
                if row.statements_done >= len(statements):
                    raise MigrationError(f"{row.script}: has no statement {number} any more")
                # The row holds the checksum of every statement as sent, the in-flight one too.
                checksums = row.statement_checksums
                if len(checksums) <= row.statements_done:
                    checksums = [*checksums, statements[row.statements_done].checksum]
                finished = number == len(statements)
                history.set_state(
                    row.installed_rank,
                    SUCCESS if finished else FAILED,
                    number,
                    checksums,
                    None if finished else f"interrupted; statement {number} marked done by repair",
                )
                messages.append(
                    f"{row.script}: statement {number} marked done"
                    + (
                        "; migration complete"
                        if finished
                        else f"; the next migrate continues at statement {number + 1}"
                    )
                )
        return messages
