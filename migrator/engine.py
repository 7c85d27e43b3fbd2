"""The migration engine: validate files against history, then apply what is pending.

One run = a control connection (the migration lock, the one history read, the writes that
must not depend on what a script did to its session) and a work session that runs the
scripts. The work session carries each migration's statements with its history writes
between them, in as few packets as possible; every migration starts in a session as fresh
as the `mariadb` client's for a file (the session is reset after one that changed it); a
resumed migration first gets back the session state its completed statements set up.
See docs/migrations.md for the contract.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice

import pymysql

from migrator import lock, wire
from migrator.connection import ConnectionSettings, connect
from migrator.discovery import KEEP_BYTES, Migration, MigrationSet, version_key
from migrator.errors import (
    ConfigurationError,
    InterruptedMigrationError,
    MigrationError,
    StatementFailed,
    ValidationError,
)
from migrator.history import (
    FAILED,
    IN_PROGRESS,
    SUCCESS,
    TRANSACTION,
    History,
    HistoryRow,
    statements_digest,
)
from migrator.session import DEFAULT_SERVER, Effect, Server, analyse, effective
from migrator.snapshot import SnapshotSettings, create_pre_migration_snapshot
from migrator.splitter import Statement, as_bytes

log = logging.getLogger("migrator")

ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213
LOST_CONNECTION = {2006, 2013, 2055}
REPAIR_COMMAND = "scripts/migrate repair"

# SQL per packet, history writes included: far below max_allowed_packet (16 MiB on MariaDB,
# 64 MiB on RDS MySQL 8.4; the engine uses at most half of the server's). A single larger
# statement still goes, alone.
_PACKET_BYTES = 1 << 20
# Small migrations that leave the session as they found it share a packet, at most this many.
_GROUP = 256
# Results read per packet at most: bounds what is held while the server runs it.
_PACKET_PARTS = 4096
# A migration's statements are kept in memory from validation to application up to this many
# characters (5,000 small files are read once); larger ones are read again, streaming.
_CACHE_CHARS = 4 * KEEP_BYTES


@dataclass(frozen=True)
class Progress:
    """What `MigrationOptions.progress` is told after each packet: migration `script` has
    `done` of `total` statements complete; `migration` of `migrations` pending ones."""

    script: str
    done: int
    total: int
    migration: int
    migrations: int
    finished: bool


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
    # the server drops the silent sessions, and the migration lock with them, after this long
    # (rather than the server's default of 8 hours). Idle gaps longer than this (the control
    # connection while the work session runs a long statement, a snapshot) are covered by pings.
    idle_timeout_seconds: int = 300
    # The character set every migration's session starts with (the client's
    # --default-character-set): what the bytes of a file that sets none mean.
    default_charset: str = "utf8mb4"
    progress: Callable[[Progress], None] | None = None
    # A time.monotonic() value after which the run sends no new packet, so starts no new
    # migration and no new part of one (the in-VPC function's soft deadline, vpcrunner). Each
    # run sends at least one packet, so repeated runs always progress. A stop inside a
    # migration is recorded as a failed migration is (statements_done, their digest), so the
    # next run resumes it there, in the session state its completed statements set up;
    # MigrateResult.stopped says where. (It stops only outside a script's own transaction.)
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
    """A migration to apply from statement index `start` (0-based); `row` when resuming.
    `replay`: the statements re-run first to re-create the session state statements
    1..start set up."""

    migration: Migration
    total: int
    start: int = 0
    row: HistoryRow | None = None
    cached: list[Statement] | None = field(default=None, repr=False)
    effects: list[Effect] | None = field(default=None, repr=False)
    replay: list[Statement] = field(default_factory=list, repr=False)
    # Leaves the session as it found it (its statements change no session state and each
    # returns one result): the next migration may share its packet and its session.
    neutral: bool = False

    def iter_statements(self) -> Iterator[Statement]:
        """Every statement of the migration, from the first, streaming a large file."""
        if self.cached is not None:
            return iter(self.cached)
        return self.migration.iter_statements()

    @property
    def statements(self) -> list[Statement]:
        return list(self.iter_statements())


@dataclass
class Assessment:
    steps: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # validation errors
    interrupted: list[str] = field(default_factory=list)  # killed runs to resolve
    file_problems: list[str] = field(default_factory=list)  # scripts that cannot be read
    info: list[InfoRow] = field(default_factory=list)
    applied: dict[str, str] = field(default_factory=dict)  # script -> checksum (success)
    current_version: str | None = None


def _numbered(where: str, number: int) -> str:
    return f"statement {number} ({where})"


@dataclass
class _Scan:
    """One read of a pending migration, before anything runs."""

    total: int = 0
    cached: list[Statement] | None = None
    effects: list[Effect] | None = None
    neutral: bool = False
    digest: str | None = None  # of statements 1..upto
    legacy: list[str] = field(default_factory=list)  # their pre-digest checksums
    replay: list[Statement] = field(default_factory=list)
    refusal: str = ""


def _scan(
    m: Migration, problems: list[str], server: Server, upto: int | None = None
) -> _Scan | None:
    """Read the migration once: count its statements and find every problem (refused client
    commands, unreadable sourced files, ...); keep a small one's statements; with `upto`
    (resuming after statement `upto`), check the completed statements and work out how to
    re-create the session state they set up."""
    found: list[str] = []
    scan = _Scan()
    cached: list[Statement] | None = [] if m.data is not None else None
    effects: list[Effect] | None = [] if cached is not None else None
    chars = 0
    neutral = True
    digest = hashlib.sha256() if upto else None
    replay: list[Statement] = []
    lost_vars: dict[str, tuple[Statement, int]] = {}
    lost_tables: dict[str, tuple[Statement, int]] = {}
    unfaithful: tuple[Statement, int, str] | None = None
    number = 0
    resume_at = (upto or 0) + 1
    sources: list = []
    try:
        statements = (
            iter(m.iter_statements(found))
            if m.data is not None
            else m.migration_statements(found, sources)
        )
        for stmt in statements:
            number += 1
            effect = None
            if cached is not None and effects is not None:
                chars += len(stmt.sql)
                if chars > _CACHE_CHARS:
                    cached = effects = None
                else:
                    effect = analyse(stmt, server)
                    cached.append(stmt)
                    effects.append(effect)
                    neutral = neutral and not effect.touches_session and effect.single_result
            if upto is None or scan.refusal:
                continue
            effect = analyse(stmt, server, detail=True)
            if number <= upto:
                assert digest is not None
                digest.update(as_bytes(_fingerprint(stmt)) + b"\0")
                scan.legacy.append(stmt.legacy_checksum)
                if effect.lock:
                    replay = [s for s in replay if analyse(s, server).lock != "lock"]
                if effect.replay:
                    replay.append(stmt)
                for name in effect.lost_vars:
                    lost_vars[name] = (stmt, number)
                for name in effect.sets_vars:
                    lost_vars.pop(name, None)
                for name in effect.lost_tables:
                    lost_tables[name] = (stmt, number)
                if effect.keyword == "DROP" and "TEMPORARY" in stmt.sql.upper():
                    for name in re.findall(r"[\w$]+", stmt.sql.lower()):
                        lost_tables.pop(name, None)
                if effect.not_faithful and unfaithful is None:
                    unfaithful = (stmt, number, effect.not_faithful)
                continue
            if number == resume_at and unfaithful is not None:
                first, first_number, why = unfaithful
                scan.refusal = (
                    f"{m.script}: cannot resume at statement {resume_at}: "
                    f"{_numbered(first.where, first_number)} cannot be run again "
                    f"faithfully ({why}), and the statements after it depend on it."
                    + _RESUME_WAY_OUT
                )
                continue
            assigned = effect.lost_vars | effect.sets_vars
            for name in sorted(effect.uses_vars & lost_vars.keys()):
                if name in assigned and not _reads(stmt, name):
                    continue
                setter, setter_number = lost_vars[name]
                scan.refusal = (
                    f"{m.script}: cannot resume at statement {resume_at}: "
                    f"{_numbered(setter.where, setter_number)} set @{name} to a value "
                    "computed from the data, which was lost with the session that failed, "
                    f"and {_numbered(stmt.where, number)} uses it." + _RESUME_WAY_OUT
                )
                break
            for name in assigned:
                lost_vars.pop(name, None)
            if not scan.refusal and lost_tables:
                words = set(re.findall(r"[\w$]+", stmt.sql.lower()))
                for name in sorted(words & lost_tables.keys()):
                    creator, creator_number = lost_tables[name]
                    scan.refusal = (
                        f"{m.script}: cannot resume at statement {resume_at}: "
                        f"{_numbered(creator.where, creator_number)} created the "
                        f"temporary table {name}, which was lost with the session that "
                        f"failed, and {_numbered(stmt.where, number)} uses it." + _RESUME_WAY_OUT
                    )
                    break
    except OSError as exc:
        found.append(f"{m.script}: cannot read: {exc.strerror or exc}")
    unseen = [p for p in sources if p not in m.sources]
    if unseen:
        found.append(
            f"{m.script}: sources {unseen[0].name} from the middle of a line: write `source` "
            "(or `\\.`) at the start of a line, so the migration's checksum covers that file"
        )
    if found:
        problems.extend(found)
        return None
    scan.total = number
    scan.cached, scan.effects = cached, effects
    scan.neutral = cached is not None and neutral
    if digest is not None:
        scan.digest = digest.hexdigest()
    scan.replay = replay
    return scan


_RESUME_WAY_OUT = (
    f" Resuming would run them without it: undo the migration's partial effects by hand and "
    f"run `{REPAIR_COMMAND} --restart` (it then runs from statement 1)"
)


def _fingerprint(stmt: Statement) -> str:
    from migrator.splitter import fingerprint

    return fingerprint(stmt.sql)


def _reads(stmt: Statement, name: str) -> bool:
    """Whether `stmt` reads @name other than as the target of an assignment."""
    text = re.sub(r"@" + re.escape(name) + r"\s*:?=", "", stmt.sql, flags=re.I)
    return bool(re.search(r"(?<![\w@])@" + re.escape(name) + r"\b", text, re.I))


def _interrupted_message(row: HistoryRow, in_flight: Statement | None) -> str:
    number = row.statements_done + 1
    where = f"statement {number} of {row.statements_total}"
    if in_flight is not None:
        first_line = in_flight.text.splitlines()[0][:80]
        where += f" ({in_flight.where}: {first_line!r})"
    return (
        f"{row.script} was interrupted while {where} was running: the run that started it "
        "did not finish it (its session was lost: a KILL, a failover, a crash), "
        "and history cannot tell whether that statement took effect. Check, then run "
        f"`{REPAIR_COMMAND} --mark-done` if it did, or `{REPAIR_COMMAND} --retry` if it did not "
        "(the next migrate resumes after/at it)"
    )


def latest_rows(rows: list[HistoryRow]) -> dict[str, HistoryRow]:
    """Each script's latest history row (rows come in installed_rank order)."""
    return {row.script: row for row in rows}


def _in_flight(m: Migration, done: int) -> Statement | None:
    with contextlib.suppress(ConfigurationError, OSError):
        return next(islice(m.iter_statements([]), done, None), None)
    return None


def assess(
    rows: list[HistoryRow],
    migrations: MigrationSet,
    options: MigrationOptions,
    server: Server = DEFAULT_SERVER,
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
            scan = _scan(m, a.file_problems, server)
            if scan is not None:
                a.steps.append(
                    Step(
                        m,
                        scan.total,
                        cached=scan.cached,
                        effects=scan.effects,
                        neutral=scan.neutral,
                    )
                )
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
        if row.state == IN_PROGRESS and row.in_flight == TRANSACTION:
            # Its run stopped inside a transaction, which the server rolled back: nothing is
            # in doubt. It resumes after statement statements_done, if the file is the same.
            info.state = "failed"
            info.note = "its run stopped inside a transaction, rolled back; it resumes"
            if m.checksum != row.checksum:
                a.problems.append(
                    f"{m.script}: its run stopped after statement {row.statements_done} (the "
                    "transaction it was in was rolled back), and the file changed since that "
                    f"run started it (checksum {row.checksum[:12]} then, {m.checksum[:12]} "
                    "now). Put the file back to resume it, or undo its effects by hand and run "
                    f"`{REPAIR_COMMAND} --restart`"
                )
                continue
            _resume(a, m, row, server, check=None)
            continue
        if row.state == IN_PROGRESS:
            info.state = "interrupted"
            a.interrupted.append(_interrupted_message(row, _in_flight(m, row.statements_done)))
            continue
        # A failed migration: resume at the failed statement if the completed ones are intact.
        info.state = "failed"
        info.note = (row.error or "")[:200]
        _resume(a, m, row, server, check=_completed_unchanged)

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


def _resume(
    a: Assessment,
    m: Migration,
    row: HistoryRow,
    server: Server,
    check: Callable[[HistoryRow, _Scan], bool] | None,
) -> None:
    """A step resuming `m` after statement `row.statements_done`, or the problem that stops
    it: completed statements changed (`check`), or session state that cannot be made again."""
    done = row.statements_done
    scan = _scan(m, a.file_problems, server, upto=done)
    if scan is None:
        return
    if check is not None and (scan.total < done or not check(row, scan)):
        a.problems.append(
            f"{m.script}: cannot resume: it failed at statement {done + 1} after statements "
            f"1..{done} completed, but they have changed since they ran (a change beyond "
            "comments and layout, or statements removed). Only the failed statement and "
            "later ones may change: put the completed statements back as they were, or "
            f"undo their effects by hand and run `{REPAIR_COMMAND} --restart`"
        )
        return
    if scan.refusal:
        a.problems.append(scan.refusal)
        return
    a.steps.append(
        Step(
            m,
            scan.total,
            start=done,
            row=row,
            cached=scan.cached,
            effects=scan.effects,
            replay=scan.replay,
        )
    )


def _completed_unchanged(row: HistoryRow, scan: _Scan) -> bool:
    done = row.statements_done
    if done == 0:
        return True
    if row.statements_digest:
        return row.statements_digest == scan.digest
    # A row written before statement digests: one checksum per statement, of its text.
    return scan.legacy[:done] == row.statement_checksums[:done]


# -- applying ------------------------------------------------------------------------------

_PREFIX, _WRITE, _STMT, _DONE, _TXN = range(5)


@dataclass(slots=True)
class _Part:
    kind: int
    sql: bytes | None  # None for a statement sent as it is: its payload is made when sent
    run: _Run | None = None
    index: int = 0  # 0-based statement index (_STMT)
    stmt: Statement | None = None
    effect: Effect | None = None
    replayed: bool = False  # a _PREFIX part re-creating a resumed migration's session
    progress: bool = False  # a _WRITE saying statements 1..index are done
    finishes: list[_Run] | None = None  # a _TXN writing these migrations' success rows

    @property
    def size(self) -> int:
        if self.sql is not None:
            return len(self.sql)
        assert self.stmt is not None
        return len(self.stmt.sql)  # one character per byte (splitter.as_text)

    def payload(self) -> bytes:
        if self.sql is not None:
            return self.sql
        assert self.stmt is not None
        return self.stmt.payload


# What a packet changes in a _Run, saved to be put back if its transaction rolls back.
_RUN_STATE = (
    "completed",
    "committed",
    "open_since",
    "tail_read_only",
    "last",
    "status",
    "done_status",
    "own_in_transaction",
    "dirty",
)


@dataclass
class _Run:
    """A migration while it is applied."""

    step: Step
    rank: int
    parts: Iterator[_Part] | None = None
    completed: int = 0  # statements known complete (count)
    committed: int = 0  # statements whose effects are committed (count)
    open_since: Statement | None = None  # first statement of a transaction still open
    tail_read_only: bool = True  # every statement since the last commit only read
    dirty: bool = False  # it changed session state: the next migration needs a reset
    last: Statement | None = None
    status: int = 0  # after its last statement
    done_status: int = -1  # after its success write
    started: bool = False
    own_in_transaction: int = 0  # history writes made inside the open transaction
    marked: bool = False  # its row says in_flight=transaction
    no_transaction: bool = False  # a transaction with it rolled back: one at a time now


class _Prefetched:
    """A big migration's parts, read ahead by a thread: splitting the file (Python, holding
    the GIL) overlaps with the server running the packet before (the main thread waits on
    the socket). Parts are handed over in batches; at most `limit` bytes are read ahead."""

    _BATCH = 512

    def __init__(self, parts: Iterator[_Part], limit: int = 1 << 20):
        self.source, self.limit = parts, limit
        self.cond = threading.Condition()
        self.batches: deque[tuple[list[_Part], int]] = deque()
        self.current: Iterator[_Part] = iter(())
        self.size = 0
        self.done = self.stopped = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="migrator-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            batch: list[_Part] = []
            size = 0
            for part in self.source:
                batch.append(part)
                size += part.size + 128  # (what a part costs besides its SQL)
                if len(batch) >= self._BATCH or size >= 1 << 16:
                    if not self._hand_over(batch, size):
                        return
                    batch, size = [], 0
            if batch:
                self._hand_over(batch, size)
        except BaseException as exc:  # handed to the main thread
            self.error = exc
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def _hand_over(self, batch: list[_Part], size: int) -> bool:
        with self.cond:
            while self.size > self.limit and not self.stopped:
                self.cond.wait()
            if self.stopped:
                return False
            self.batches.append((batch, size))
            self.size += size
            self.cond.notify_all()
        return True

    def __iter__(self) -> _Prefetched:
        return self

    def __next__(self) -> _Part:
        part = next(self.current, None)
        if part is not None:
            return part
        with self.cond:
            while not self.batches and not self.done:
                self.cond.wait()
            if self.batches:
                batch, size = self.batches.popleft()
                self.size -= size
                self.cond.notify_all()
                self.current = iter(batch)
                return next(self.current)
        if self.error is not None:
            raise self.error
        raise StopIteration

    def close(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        self.thread.join()


def _server_error(exc: pymysql.err.MySQLError) -> str:
    if len(exc.args) >= 2:
        return f"server error {exc.args[0]}: {exc.args[1]}"
    return str(exc)


_NEAR = re.compile(r"near '(.*)' at line (\d+)", re.S)


def _about_the_statement(message: str, sql: str) -> str:
    """The server's message with its "near '...'" excerpt cut at the end of the statement:
    in a packet the text after it is the engine's own history SQL."""
    match = _NEAR.search(message)
    if not match:
        return message
    excerpt = match.group(1)
    if excerpt.endswith("..."):
        excerpt = excerpt[:-3]
    sql = sql.rstrip()
    if excerpt not in sql:
        for size in range(len(excerpt), 0, -1):
            if sql.endswith(excerpt[:size]):
                excerpt = excerpt[:size]
                break
        else:
            excerpt = ""
    return (
        message[: match.start()]
        + f"near '{excerpt}' at line {match.group(2)}"
        + message[match.end() :]
    )


_LOCK_HEAD = re.compile(r"\s*LOCK\s+TABLES?\b", re.I)


def _locking_history(stmt: Statement, table: str) -> bytes:
    """LOCK TABLES with the history table added (WRITE): a session holding table locks can
    use no other table (https://dev.mysql.com/doc/refman/8.4/en/lock-tables.html, the same
    on MariaDB), and the engine writes history in the script's session."""
    sql = stmt.payload.rstrip()
    locked = b", " + table.encode() + b" WRITE"
    if _LOCK_HEAD.match(stmt.sql):
        return sql + locked
    if sql.startswith(b"/*") and sql.endswith(b"*/"):  # /*!40000 LOCK TABLES ... */
        return sql[:-2].rstrip() + locked + b" */"
    return sql


class _Keepalive:
    """Pings a connection from a thread every `every` seconds while the main thread works on
    another one, so the idle control connection does not reach its wait_timeout; `paused()`
    while the main thread uses it."""

    def __init__(self, conn: pymysql.connections.Connection, every: float):
        self.conn, self.every = conn, every
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="migrator-keepalive", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            with self.lock:
                try:
                    self.conn.ping(reconnect=False)
                except pymysql.err.Error:
                    return  # gone: the next use reports it

    def __enter__(self) -> _Keepalive:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self.lock:
            yield


@contextmanager
def _kept_alive(conn: pymysql.connections.Connection, every: float) -> Iterator[None]:
    with _Keepalive(conn, every):
        yield


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
        self.work_lock = lock.work_lock_name(self.lock_name)
        if not re.fullmatch(r"\w+", self.options.default_charset):
            raise ConfigurationError(
                [
                    f"default_charset {self.options.default_charset!r}: expected a character "
                    "set name such as utf8mb4 or latin1"
                ],
                "bad option",
            )
        self.server = DEFAULT_SERVER

    # -- session -------------------------------------------------------------------------
    @contextmanager
    def _session(self, locked: bool) -> Iterator[tuple[pymysql.connections.Connection, History]]:
        conn = connect(self.settings, multi_statements=True)
        try:
            self.server = Server.from_banner(conn.get_server_info())
            with conn.cursor() as cur:
                wait = int(self.options.statement_lock_wait_seconds)
                cur.execute(
                    "SET SESSION lock_wait_timeout = %s, innodb_lock_wait_timeout = %s, "
                    "wait_timeout = %s",
                    (wait, wait, int(self.options.idle_timeout_seconds)),
                )
            if locked:
                lock.acquire(conn, self.lock_name, self.options.lock_wait_seconds)
                lock.wait_for_work(conn, self.work_lock, self.options.lock_wait_seconds)
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

    def _assess(self, history: History, create: bool, full: bool = False) -> Assessment:
        rows = history.read(create=create, upgrade=create, full=full)
        return assess(rows, self.migrations, self.options, self.server)

    # -- read-only -----------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValidationError (or ConfigurationError) listing all problems; writes nothing."""
        with self._session(locked=False) as (_, history):
            a = self._assess(history, create=False)
        problems = a.interrupted + a.problems
        if problems:
            raise ValidationError(problems)
        if a.file_problems:
            raise ConfigurationError(a.file_problems, "migration files are not usable")

    def info(self) -> list[InfoRow]:
        with self._session(locked=False) as (_, history):
            return self._assess(history, create=False, full=True).info

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
        if a.file_problems:
            raise ConfigurationError(a.file_problems, "migration files are not usable")
        if a.interrupted:
            raise InterruptedMigrationError(
                a.interrupted + a.problems, heading="a previous run was interrupted"
            )
        if a.problems:
            raise ValidationError(a.problems)

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
            with conn.cursor() as cur:
                cur.execute("SELECT @@max_allowed_packet")
                row = cur.fetchone()
            cap = min(_PACKET_BYTES, int(row[0]) // 2 if row else _PACKET_BYTES)
            runs = [
                _Run(s, s.row.installed_rank if s.row is not None else history.allocate_rank())
                for s in a.steps
            ]
            applier = _Applier(self, conn, history, runs, cap, result, a.current_version)
            with _Keepalive(conn, self.options.idle_timeout_seconds / 3) as keepalive:
                applier.keepalive = keepalive
                try:
                    applier.run()
                finally:
                    applier.close()
            return result

    def _starting(self, step: Step) -> None:
        """Called as a migration's first statement is put in a packet (a test hook)."""

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
            for row in latest_rows(history.read(create=False, upgrade=True)).values():
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
                messages.append(self._resolve(history, row, m, action))
        return messages

    def _resolve(self, history: History, row: HistoryRow, m: Migration | None, action: str) -> str:
        number = row.statements_done + 1
        if action == "mark-done" and row.in_flight == TRANSACTION:
            raise MigrationError(
                f"{row.script}: statement {number} ran in a transaction that was rolled back "
                "when its session was lost: it did not take effect, so there is nothing to mark "
                "done (the next migrate resumes at it by itself)"
            )
        done = number if action == "mark-done" else row.statements_done
        if m is None:
            raise MigrationError(
                f"{row.script}: cannot resolve statement {number}: the file is missing; restore "
                f"it, or undo the migration's effects by hand and run `{REPAIR_COMMAND} --restart`"
            )
        legacy: list[str] | None = None
        digest: str | None = None
        if not history.has_digest or (row.statement_checksums and not row.statements_digest):
            # A row from before statement digests: it lists every statement's checksum.
            legacy = row.statement_checksums[:done]
            if action == "mark-done" and len(legacy) < done:
                stmt = _in_flight(m, row.statements_done)
                if stmt is None:
                    raise MigrationError(f"{row.script}: has no statement {number} any more")
                legacy.append(stmt.legacy_checksum)
        else:
            if m.checksum != row.checksum:
                raise MigrationError(
                    f"{row.script}: cannot resolve statement {number}: the file changed after "
                    f"the interrupted run started it (checksum {row.checksum[:12]} then, "
                    f"{m.checksum[:12]} now), so history cannot tell which statements ran. Put "
                    "the file back as it was, run repair, then make the change"
                )
            statements = list(islice(m.iter_statements(), done))
            if len(statements) < done:
                raise MigrationError(f"{row.script}: has no statement {number} any more")
            digest = statements_digest(statements)
        finished = action == "mark-done" and number == row.statements_total
        if action == "retry":
            note = f"interrupted during statement {number}; marked for retry by repair"
        else:
            note = f"interrupted; statement {number} marked done by repair"
        history.set_state(
            row.installed_rank,
            SUCCESS if finished else FAILED,
            done,
            digest=digest,
            legacy_checksums=legacy,
            error=None if finished else note,
        )
        if action == "retry":
            return f"{row.script}: statement {number} will run again on the next migrate"
        return f"{row.script}: statement {number} marked done" + (
            "; migration complete"
            if finished
            else f"; the next migrate continues at statement {number + 1}"
        )


class _Applier:
    """Applies the pending migrations over the work session: builds packets of statements
    and history writes, reads their results, resets the session between migrations that
    need it, and records failures over the control connection."""

    def __init__(
        self,
        migrator: Migrator,
        control: pymysql.connections.Connection,
        history: History,
        runs: list[_Run],
        cap: int,
        result: MigrateResult,
        current_version: str | None,
    ):
        self.m = migrator
        self.options = migrator.options
        self.control = control
        self.history = history
        self.runs = deque(runs)
        self.total = len(runs)
        self.cap = cap
        self.result = result
        self.highest = version_key(current_version) if current_version else None
        self.work: pymysql.connections.Connection | None = None
        self.fresh = True  # the work session has not had its setup yet
        self.keepalive: _Keepalive | None = None
        self.pending: deque[_Part] = deque()  # parts of the current migration(s) still to send
        self.active: deque[_Run] = deque()  # migrations with parts in flight, in order
        self.finished = 0
        self.readers: list[_Prefetched] = []
        # What the work session is known to be in, for statements to run in transactions:
        # its database (None: not known) and whether it holds table locks.
        self.current_db: str | None = migrator.settings.database
        self.locked = False
        self.transactional: dict[tuple[str, str], bool] = {}  # InnoDB table, no triggers
        self.one_at_a_time = 0  # parts to send without a transaction (after one rolled back)
        self.wrapped: list[_Part] | None = None  # the packet being sent, if in a transaction
        self.bulk: list[_Run] = []  # the migrations of a _bulk packet being sent
        self.packets = 0  # sent in this run (see MigrationOptions.stop_after)

    # -- the work session ---------------------------------------------------------------
    def _work(self) -> pymysql.connections.Connection:
        if self.work is None or not self.work.open:
            self.work = connect(self.m.settings, multi_statements=True, session_track=True)
            self.fresh = True
        return self.work

    def _setup(self) -> list[_Part]:
        """What a fresh (or reset) session runs first: the engine's timeouts, the tracking of
        session changes, the default character set, the target database, the work lock."""
        wait = int(self.options.statement_lock_wait_seconds)
        idle = int(self.options.idle_timeout_seconds)
        database = self.m.settings.database.replace("`", "``")
        sqls = [
            f"SET SESSION lock_wait_timeout = {wait}, innodb_lock_wait_timeout = {wait}, "
            f"wait_timeout = {idle}, session_track_state_change = ON",
            f"USE `{database}`",  # (before SET NAMES: the name is UTF-8)
            "DO GET_LOCK(" + _quoted(self.m.work_lock) + ", 0)",
            f"SET NAMES {self.options.default_charset}",
        ]
        return [_Part(_PREFIX, s.encode()) for s in sqls]

    def _reset(self) -> None:
        if self.work is not None and self.work.open:
            try:
                wire.reset(self.work)
            except pymysql.err.MySQLError:
                self.work.close()
        self.fresh = True
        self.current_db, self.locked = self.m.settings.database, False

    def close(self) -> None:
        for reader in self.readers:
            reader.close()
        if self.work is not None and self.work.open:
            with contextlib.suppress(Exception):
                self.work.close()

    # -- building packets ---------------------------------------------------------------
    def _parts(self, run: _Run) -> Iterator[_Part]:
        step, history = run.step, self.history
        for stmt in step.replay:
            locks = analyse(stmt, self.m.server).lock == "lock"
            sql = _locking_history(stmt, history.table) if locks else stmt.payload
            yield _Part(_PREFIX, sql, run, stmt=stmt, replayed=True)
        if step.row is None:
            first = history.start_sql(run.rank, step.migration, step.total)
        else:
            first = history.resume_sql(run.rank, step.migration.checksum, step.total)
            log.info("%s: resuming at statement %d", step.migration.script, step.start + 1)
        yield _Part(_WRITE, first.encode(), run)
        effects = step.effects
        server = self.m.server
        statements = islice(step.iter_statements(), step.start, None)
        for index, stmt in enumerate(statements, start=step.start):
            if index > step.start:
                yield _Part(
                    _WRITE,
                    history.statement_done_sql(run.rank, index).encode(),
                    run,
                    index,
                    progress=True,
                )
            effect = effects[index] if effects is not None else analyse(stmt, server)
            sql = _locking_history(stmt, history.table) if effect.lock == "lock" else None
            yield _Part(_STMT, sql, run, index, stmt, effect)
        yield _Part(_DONE, history.finish_sql(run.rank, step.total).encode(), run)

    def _parts_of(self, run: _Run) -> Iterator[_Part]:
        if run.step.cached is not None:
            return self._parts(run)
        prefetched = _Prefetched(self._parts(run))
        self.readers.append(prefetched)
        return prefetched

    def _next_part(self) -> _Part | None:
        if self.pending:
            return self.pending.popleft()
        if not self.active or self.active[-1].parts is None:
            return None
        run = self.active[-1]
        part = next(run.parts, None)  # type: ignore[arg-type]
        if part is None:
            run.parts = None
        return part

    def run(self) -> None:
        while self.runs or self.active or self.pending:
            if self.packets and self._out_of_time() and self._stop():
                return
            packet = self._bulk() if not self.active and not self.pending else None
            if packet is None:
                if not self.active and not self.pending:
                    run = self.runs.popleft()
                    run.parts = self._parts_of(run)
                    self.active.append(run)
                packet = self._build()
            if not packet:
                continue
            # (A packet of history writes alone is no progress: it does not count.)
            self.packets += any(p.kind in (_STMT, _DONE) or p.finishes for p in packet)
            self._send(packet)
            self._after_packet()

    def _build(self) -> list[_Part]:
        """The next packet. Statements that only write InnoDB tables, in a session with
        autocommit on and no table locks, go in a transaction with their history (one commit
        for the packet, and a lost session rolls back both); everything else one at a time,
        each history write between the statements it reports on."""
        head: list[_Part] = []
        size = 0
        self._work()
        if self.fresh:
            head.extend(self._setup())
            size = sum(p.size for p in head)
        body: list[_Part] = []
        transaction: bool | None = None
        while True:
            part = self._next_part()
            if part is None:
                # The newest migration has no more parts: may the next one share the packet?
                run = self.active[-1] if self.active else None
                if (
                    run is not None
                    and run.step.neutral
                    and self.runs
                    and self.runs[0].step.row is None
                    and len(self.active) < _GROUP
                    and size < self.cap
                ):
                    nxt = self.runs.popleft()
                    nxt.parts = self._parts_of(nxt)
                    self.active.append(nxt)
                    continue
                break
            if body and (size + part.size + 1 > self.cap or len(body) >= _PACKET_PARTS):
                self.pending.appendleft(part)
                break
            if part.kind == _STMT:
                # (Decided on the packet's first statement, in the session as the packets
                # before left it; a packet that is not a transaction asks nothing more.)
                if transaction is None or transaction:
                    fits = self.one_at_a_time == 0 and self._transactional(part)
                    if transaction is None:
                        transaction = fits
                    elif not fits:
                        self.pending.appendleft(part)
                        break
                self._follow(part)
            if self.one_at_a_time:
                self.one_at_a_time -= 1
            if part.kind == _WRITE and part.run is not None and not part.run.started:
                part.run.started = True
                self.m._starting(part.run.step)
            body.append(part)
            size += part.size + 1
            if part.kind == _STMT and part.effect is not None and not part.effect.single_result:
                break  # its results are read to the end: nothing may follow it
            if part.kind == _DONE and part.run is not None and not part.run.step.neutral:
                break  # the session is checked (and maybe reset) before the next migration
        self.wrapped, self.bulk = None, []
        if transaction:
            return head + self._in_transaction(body)
        parts: list[_Part] = []
        for part in body:
            run = part.run
            if run is not None and run.marked and part.kind in (_STMT, _WRITE):
                # The row says a lost session's work was rolled back: no longer so.
                if part.progress:
                    part.sql = self.history.one_at_a_time_sql(run.rank, part.index).encode()
                elif part.kind == _STMT:
                    clear = self.history.one_at_a_time_sql(run.rank, part.index).encode()
                    parts.append(_Part(_TXN, clear, run))
                run.marked = False
            parts.append(part)
        return head + parts

    def _bulk(self) -> list[_Part] | None:
        """Small new migrations whose statements all only write InnoDB tables, in one
        transaction with one INSERT of their history rows (the 5,000-small-files case): the
        same as _build and _in_transaction would send, without their per-part work."""
        if self.one_at_a_time or not self.runs:
            return None
        status = wire.status(self._work())
        if (
            self.locked
            or self.current_db is None
            or not status & wire.AUTOCOMMIT
            or (status & wire.IN_TRANS)
        ):
            return None
        group: list[_Run] = []
        statements: list[_Part] = []
        size = 0
        while self.runs and len(group) < _GROUP:
            run = self.runs[0]
            step = run.step
            if (
                step.row is not None
                or not step.neutral
                or step.effects is None
                or step.cached is None
                or run.no_transaction
            ):
                break
            parts = []
            for index, (stmt, effect) in enumerate(zip(step.cached, step.effects, strict=True)):
                if effect.table is None:
                    break
                key = (effect.table[0] or self.current_db, effect.table[1])
                known = self.transactional.get(key)
                if known is None:
                    known = self.transactional[key] = self._innodb_without_triggers(key)
                if not known:
                    break
                parts.append(_Part(_STMT, None, run, index, stmt, effect))
            else:
                added = sum(p.size + 1 for p in parts)
                if group and (
                    size + added > self.cap or len(statements) + len(parts) > _PACKET_PARTS
                ):
                    break
                self.runs.popleft()
                group.append(run)
                statements.extend(parts)
                size += added
                continue
            break
        if len(group) < 2:
            self.runs.extendleft(reversed(group))
            return None
        head = self._setup() if self.fresh else []
        for run in group:
            run.started = True
            self.m._starting(run.step)
        rows = [(run.rank, run.step.migration, run.step.total) for run in group]
        self.active.extend(group)
        self.bulk = group
        self.wrapped = statements
        return [
            *head,
            _Part(_TXN, b"START TRANSACTION"),
            *statements,
            _Part(_TXN, self.history.applied_sql(rows).encode(), finishes=group),
            _Part(_TXN, b"COMMIT"),
        ]

    def _out_of_time(self) -> bool:
        stop_after = self.options.stop_after
        return stop_after is not None and time.monotonic() >= stop_after

    def _stop(self) -> bool:
        """Stop at `stop_after`, between two packets: before the next migration, or inside
        one (recorded as a failure is, so the next run resumes there) unless the script's
        own transaction is open. Returns whether it stopped."""
        if not self.active:
            step = self.runs[0].step
            self.result.stopped = Stopped(step.migration.script, step.start + 1, step.total)
            return True
        if wire.status(self.work) & wire.IN_TRANS:
            return False  # not inside the script's transaction: go on to its end
        run = self.active[0]
        step, done = run.step, run.completed
        if done == step.total:
            return False  # only its success write is left to send
        self._reset()  # (its session state is re-created when it resumes)
        self._record(
            run,
            done,
            f"paused before statement {done + 1} of {step.total}: the run reached its "
            "deadline (not an error; the next migrate resumes here)",
        )
        log.info(
            "%s: paused before statement %d of %d", step.migration.script, done + 1, step.total
        )
        self.result.stopped = Stopped(step.migration.script, done + 1, step.total)
        return True

    def _follow(self, part: _Part) -> None:
        """What a statement sent does to the session, as far as _transactional needs it."""
        effect = part.effect
        assert effect is not None
        if effect.lock == "lock":
            self.locked = True
        elif effect.lock == "unlock":
            self.locked = False
        if effect.keyword == "USE":
            found = re.match(
                r"\s*USE\s+(`(?:[^`]|``)+`|[\w$]+)\s*$",
                effective(part.stmt.sql, self.m.server) if part.stmt else "",
                re.I,
            )
            name = found.group(1) if found else None
            self.current_db = (
                name[1:-1].replace("``", "`") if name and name.startswith("`") else name
            )
        if effect.table is None:
            self.transactional.clear()  # DDL may change what a table is

    def _transactional(self, part: _Part) -> bool:
        effect = part.effect
        if effect is None or effect.table is None or self.locked or self.current_db is None:
            return False
        if part.run is not None and part.run.no_transaction:
            return False
        status = wire.status(self.work)
        if not status & wire.AUTOCOMMIT or status & wire.IN_TRANS:
            return False
        key = (effect.table[0] or self.current_db, effect.table[1])
        known = self.transactional.get(key)
        if known is None:
            known = self.transactional[key] = self._innodb_without_triggers(key)
        return known

    def _innodb_without_triggers(self, key: tuple[str, str]) -> bool:
        """Whether a table's writes roll back with a transaction: an InnoDB base table that
        no trigger writes other (maybe non-transactional) tables from."""
        found: list[tuple] = []

        def look() -> None:
            with self.control.cursor() as cur:
                cur.execute(
                    "SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA "
                    "= %s AND TABLE_NAME = %s AND ENGINE = 'InnoDB' AND TABLE_TYPE = "
                    "'BASE TABLE'), (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE "
                    "EVENT_OBJECT_SCHEMA = %s AND EVENT_OBJECT_TABLE = %s)",
                    (key[0], key[1], key[0], key[1]),
                )
                found.extend(cur.fetchall())

        try:
            self._control(look)
        except pymysql.err.MySQLError:
            return False
        return bool(found) and found[0][0] == 1 and found[0][1] == 0

    def _in_transaction(self, body: list[_Part]) -> list[_Part]:
        """`body` as one transaction: its progress writes but each migration's last dropped
        (nothing in between is seen by anyone), every row it leaves in progress marked
        in_flight=transaction; a migration already in progress is marked before it starts."""
        history = self.history
        before: list[_Part] = []
        inside: list[_Part] = [_Part(_TXN, b"START TRANSACTION")]
        started = {id(p.run) for p in body if p.kind == _WRITE and not p.progress}
        whole = {id(p.run) for p in body if p.kind == _DONE} & {
            id(p.run) for p in body if p.kind == _WRITE and p.sql and p.sql.startswith(b"INSERT")
        }
        last_statement: dict[int, _Part] = {}
        finished: set[int] = set()
        applied: list[_Run] = []
        for part in body:
            run = part.run
            if part.kind == _STMT and run is not None:
                last_statement[id(run)] = part
                if id(run) not in started and not run.marked:
                    before.append(_Part(_TXN, history.in_transactions_sql(run.rank).encode(), run))
                    run.marked = True
            if part.kind == _DONE and run is not None:
                finished.add(id(run))
                run.marked = False
            if id(run) in whole and run is not None:
                # Applied whole in this transaction: its row is written once, applied, with
                # the others' (below): no start row, no success update.
                if part.kind == _DONE:
                    applied.append(run)
                if part.kind in (_WRITE, _DONE):
                    continue
            if not part.progress:
                inside.append(part)
        if applied:
            rows = [(run.rank, run.step.migration, run.step.total) for run in applied]
            inside.append(_Part(_TXN, history.applied_sql(rows).encode(), finishes=applied))
        for key, part in last_statement.items():
            run = part.run
            if key not in finished and run is not None:
                inside.append(
                    _Part(_TXN, history.in_transactions_sql(run.rank, part.index + 1).encode(), run)
                )
                run.marked = True
        inside.append(_Part(_TXN, b"COMMIT"))
        self.wrapped = body
        return before + inside

    # -- sending and reading ------------------------------------------------------------
    def _send(self, parts: list[_Part]) -> None:
        work = self._work()
        self.fresh = False
        wrapped = self.wrapped
        runs = {id(p.run): p.run for p in wrapped or () if p.run is not None}
        runs.update({id(r): r for p in parts if p.finishes for r in p.finishes})
        saved = {key: tuple(getattr(run, n) for n in _RUN_STATE) for key, run in runs.items()}
        try:
            wire.send(work, b";".join([p.payload() for p in parts]))
        except pymysql.err.MySQLError as exc:
            self._lost(parts[0], exc)
        last = len(parts) - 1
        status = 0
        for position, part in enumerate(parts):
            try:
                if position == last and part.kind == _STMT and not part.effect.single_result:  # type: ignore[union-attr]
                    status = wire.drain(work)
                else:
                    status = wire.read_result(work)
            except pymysql.err.MySQLError as exc:
                if wrapped is not None and (exc.args[0] if exc.args else 0) not in LOST_CONNECTION:
                    self._rolled_back(wrapped, runs, saved)
                    return
                if part.kind == _STMT:
                    self._statement_failed(part, exc, parts[position + 1 :])
                    return
                self._write_failed(part, exc)
                return
            self._completed(part, status)
        for run in runs.values():  # committed
            run.committed = run.completed
            run.open_since, run.tail_read_only, run.own_in_transaction = None, True, 0
            run.status &= ~wire.IN_TRANS
            if run.done_status >= 0:
                run.done_status &= ~wire.IN_TRANS

    def _rolled_back(
        self, body: list[_Part], runs: dict[int, _Run], saved: dict[int, tuple]
    ) -> None:
        """A statement of a transaction failed: roll it all back (the history in it too) and
        send the same parts again one at a time, where the failure (if it happens again) is
        recorded statement by statement, exactly as the client would leave it."""
        work = self._work()
        try:
            wire.send(work, b"ROLLBACK")
            wire.read_result(work)
        except pymysql.err.MySQLError as exc:
            self._lost(body[0], exc)
        for key, run in runs.items():
            for name, value in zip(_RUN_STATE, saved[key], strict=True):
                setattr(run, name, value)
        if self.bulk:  # whole migrations: back to the queue, one at a time
            for run in self.bulk:
                self.active.remove(run)
                run.no_transaction, run.started = True, False
            self.runs.extendleft(reversed(self.bulk))
            self.bulk = []
            return
        self.pending.extendleft(reversed(body))
        self.one_at_a_time = len(body)
        log.info("a transaction of %d statement(s) failed; sending them one at a time", len(body))

    def _completed(self, part: _Part, status: int) -> None:
        run = part.run
        if part.finishes:
            for done in part.finishes:
                done.done_status = status
            return
        if run is None:
            return
        if part.kind == _STMT:
            assert part.effect is not None and part.stmt is not None
            run.completed = part.index + 1
            run.last, run.status = part.stmt, status
            if status & wire.SESSION_STATE_CHANGED or part.effect.touches_session:
                run.dirty = True
            if status & wire.IN_TRANS:
                if run.tail_read_only and run.open_since is None:
                    run.open_since = part.stmt
                run.tail_read_only = run.tail_read_only and part.effect.read_only
            else:
                run.committed = run.completed
                run.open_since, run.tail_read_only = None, True
            if not status & wire.IN_TRANS:
                run.own_in_transaction = 0
        else:
            if status & wire.IN_TRANS:
                run.own_in_transaction += 1
            else:
                run.own_in_transaction = 0
            if part.kind == _DONE:
                run.done_status = status

    def _after_packet(self) -> None:
        """Migrations whose success write was in the packet are finished: make that durable,
        and give the next migration a fresh session if this one changed it."""
        while self.active and self.active[0].done_status >= 0:
            run = self.active.popleft()
            self._finish(run)
        if self.active:
            self._report(self.active[0], finished=False)

    def _finish(self, run: _Run) -> None:
        step = run.step
        m = step.migration
        if step.total == step.start:
            run.status = run.done_status
        if run.status & wire.IN_TRANS and run.completed:
            self._uncommitted(run)
        elif run.done_status & wire.IN_TRANS:
            # Autocommit is off (the script turned it off): commit the success write.
            work = self._work()
            try:
                work.commit()
            except pymysql.err.MySQLError as exc:
                self._record(
                    run, run.completed, f"the success write was not committed: {_server_error(exc)}"
                )
                raise MigrationError(
                    f"{m.script}: {_server_error(exc)} committing its history"
                ) from None
        if run.dirty or not run.done_status & wire.AUTOCOMMIT:
            self._reset()
        log.info("%s: applied %d statement(s)", m.script, step.total - step.start)
        self.finished += 1
        self.result.applied.append(m.script)
        self.result.checksums[m.script] = m.checksum
        if m.version is not None and (self.highest is None or m.version_key > self.highest):
            self.highest = m.version_key
            self.result.current_version = m.version
        self._report(run, finished=True)

    def _uncommitted(self, run: _Run) -> None:
        """The script ended inside a transaction it never committed. The client's session
        ends and the server rolls it back: so does the engine. Only reads since the last
        commit: nothing is lost, the migration succeeded. Writes: a failure to fix."""
        m = run.step.migration
        changed = self._rows_changed_by_the_script(run)
        self._reset()  # rolls the transaction (and the success write in it) back
        if changed == 0 or (changed is None and run.tail_read_only):
            self._control(
                lambda: self.history.write(self.history.finish_sql(run.rank, run.step.total))
            )
            return
        first = run.open_since
        number = run.committed + 1
        where = first.where if first is not None else "?"
        message = (
            f"statements {number}..{run.step.total} ran in a transaction the file never "
            "commits: rolled back, as the end of the mariadb client's session rolls it back. "
            f"End the transaction with COMMIT; the next run resumes at statement {number}"
        )
        self._record(run, run.committed, f"statement {number} ({where}): {message}")
        raise StatementFailed(
            m.script,
            number,
            first.line if first else 0,
            0,
            message,
            file=first.file if first else None,
        )

    def _rows_changed_by_the_script(self, run: _Run) -> int | None:
        """Rows the open transaction changed, the engine's own history writes in it left
        out; None if the server does not say (INNODB_TRX needs the PROCESS privilege:
        https://dev.mysql.com/doc/refman/8.4/en/information-schema-innodb-trx-table.html;
        RDS's master user has it)."""
        work = self._work()
        try:
            with work.cursor() as cur:
                cur.execute(
                    "SELECT trx_rows_modified FROM information_schema.INNODB_TRX "
                    "WHERE trx_mysql_thread_id = CONNECTION_ID()"
                )
                row = cur.fetchone()
        except pymysql.err.MySQLError:
            return None
        if row is None:
            return None
        return max(0, int(row[0]) - run.own_in_transaction)

    def _report(self, run: _Run, finished: bool) -> None:
        if self.options.progress is not None:
            self.options.progress(
                Progress(
                    run.step.migration.script,
                    run.completed,
                    run.step.total,
                    self.finished + (0 if finished else 1),
                    self.total,
                    finished,
                )
            )

    # -- failures -----------------------------------------------------------------------
    def _control(self, action: Callable[[], None]) -> None:
        if self.keepalive is not None:
            with self.keepalive.paused():
                action()
        else:
            action()

    def _record(self, run: _Run, done: int, error: str) -> None:
        """A failure, written over the control connection (a clean session) after the work
        session was reset (so no lock or transaction of the script is in the way)."""
        statements = list(islice(run.step.iter_statements(), done)) if done else []
        digest = statements_digest(statements) if done else None
        try:
            self._control(lambda: self.history.fail(run.rank, done, digest, error))
        except pymysql.err.MySQLError:
            log.warning(
                "%s: the failure could not be recorded in history", run.step.migration.script
            )

    def _lost(self, part: _Part, exc: pymysql.err.MySQLError) -> None:
        run = part.run
        script = run.step.migration.script if run else "?"
        raise MigrationError(f"{script}: lost the work session: {_server_error(exc)}") from None

    def _statement_failed(
        self, part: _Part, exc: pymysql.err.MySQLError, rest: list[_Part]
    ) -> None:
        run, stmt = part.run, part.stmt
        assert run is not None and stmt is not None and part.effect is not None
        try:
            self._retry(part, exc)
        except pymysql.err.MySQLError as final:
            exc = final
        else:
            self._completed(part, wire.status(self.work))
            self.pending.extendleft(reversed(rest))
            return
        m = run.step.migration
        code = int(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else 0
        message = _about_the_statement(
            str(exc.args[1]) if len(exc.args) > 1 else str(exc), stmt.text
        )
        number = part.index + 1
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
            raise StatementFailed(
                m.script, number, stmt.line, code, message, note, file=stmt.file
            ) from None
        in_transaction = bool(wire.status(self.work) & wire.IN_TRANS)
        done = run.committed if in_transaction and run.committed < part.index else part.index
        self._reset()  # rolls back what the script's open transaction did
        self._record(run, done, f"statement {number} ({stmt.where}): error {code}: {message}")
        if done != part.index:
            note = (note + "; " if note else "") + (
                f"its open transaction was rolled back; the next run resumes at statement "
                f"{done + 1}"
            )
        raise StatementFailed(
            m.script, number, stmt.line, code, message, note, file=stmt.file
        ) from None

    def _write_failed(self, part: _Part, exc: pymysql.err.MySQLError) -> None:
        run = part.run
        if part.kind == _PREFIX:
            if part.replayed and run is not None and part.stmt is not None:
                raise MigrationError(
                    f"{run.step.migration.script}: cannot resume: re-running "
                    f"{part.stmt.where} ({part.stmt.text.splitlines()[0][:60]!r}), which "
                    "re-creates the session state the completed statements set up, failed: "
                    f"{_server_error(exc)}"
                ) from None
            raise MigrationError(
                f"cannot set up the session for migrating: {_server_error(exc)}"
            ) from None
        assert run is not None
        m = run.step.migration
        if part.kind == _WRITE and not run.completed and part.payload().startswith(b"INSERT"):
            raise MigrationError(
                f"{m.script}: cannot record its start in history: {_server_error(exc)}"
            ) from None
        last = run.last
        in_transaction = bool(wire.status(self.work) & wire.IN_TRANS)
        done = run.committed if in_transaction else run.completed
        self._reset()
        where = _numbered(last.where, run.completed) if last is not None else "the start"
        reason = _server_error(exc)
        self._record(run, done, f"cannot record progress after {where}: {reason}")
        raise MigrationError(
            f"{m.script}: cannot record progress after {where}, so the statements after it "
            f"did not run: {reason}. The statement left its session unable to write the "
            "engine's history table (a read-only transaction, a lock, ...); history says "
            f"statements 1..{done} completed"
        ) from None

    def _retry(self, part: _Part, error: pymysql.err.MySQLError) -> None:
        """Re-run a statement that timed out waiting for a lock, alone, with backoff, a
        bounded number of times; re-raise anything else (or the last failure)."""
        stmt = part.stmt
        assert stmt is not None
        delay = self.options.statement_retry_backoff
        attempt = 1
        work = self._work()
        while True:
            code = error.args[0] if error.args else 0
            in_trans = bool(wire.status(work) & wire.IN_TRANS)
            retriable = code == ER_LOCK_WAIT_TIMEOUT or (code == ER_LOCK_DEADLOCK and not in_trans)
            if not retriable or attempt > self.options.statement_retries:
                error.attempts = attempt  # type: ignore[attr-defined]
                raise error
            log.warning(
                "statement at %s waited %ss for a lock (error %s); retry %d/%d in %.1fs",
                stmt.where,
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
                wire.send(work, part.payload())
                wire.drain(work)
                return
            except pymysql.err.MySQLError as exc:
                error = exc


def _quoted(name: str) -> str:
    return "'" + name.replace("\\", "\\\\").replace("'", "''") + "'"


__all__ = [
    "Assessment",
    "InfoRow",
    "MigrateResult",
    "MigrationOptions",
    "Migrator",
    "Progress",
    "Step",
    "assess",
    "effective",
]
