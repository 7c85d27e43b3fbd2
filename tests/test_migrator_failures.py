"""Failure modes against the real MariaDB: failed statements and resume, lock contention,
metadata-lock waits, 8 racing processes, a run killed with SIGKILL."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from migrator_support import (
    ROOT,
    history,
    migrator_for,
    one_row,
    query,
    tables,
    write_migrations,
)

from migrator import engine
from migrator.errors import (
    InterruptedMigrationError,
    LockTimeoutError,
    MigrationError,
    StatementFailed,
    ValidationError,
)
from migrator.lock import default_lock_name
from migrator.snapshot import SnapshotSettings
from standins.mariadb import MariaDBServer

FAILING_V1 = (
    "CREATE TABLE a (x INT);\n"
    "CREATE TABLE b (x INT);\n"
    "INSERT INTO no_such_table VALUES (1);\n"
    "CREATE TABLE c (x INT);\n"
)


def test_failed_statement_stops_records_progress_and_resumes_after_fix(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(
        tmp_path, {"V1__abc.sql": FAILING_V1, "V2__d.sql": "CREATE TABLE d (x INT);"}
    )
    with pytest.raises(StatementFailed) as caught:
        migrator_for(mariadb, database, location).migrate()
    failure = caught.value
    assert (failure.script, failure.statement_number, failure.line) == ("V1__abc.sql", 3, 3)
    assert failure.error_code == 1146
    assert "V1__abc.sql: statement 3 (line 3) failed: server error 1146" in str(failure)
    assert "no_such_table" in str(failure)
    # Completed statements recorded; nothing after the failure (nor V2) applied.
    assert history(mariadb, database) == [("V1__abc.sql", "failed", 0, 2)]
    assert {"a", "b"} <= tables(mariadb, database)
    assert not {"c", "d"} & tables(mariadb, database)
    info = {r.script: r.state for r in migrator_for(mariadb, database, location).info()}
    assert info == {"V1__abc.sql": "failed", "V2__d.sql": "pending"}

    # Fix the failed statement; the completed ones (a, b) are not run again (they would fail).
    (location / "V1__abc.sql").write_text(
        FAILING_V1.replace("INSERT INTO no_such_table", "INSERT INTO a")
    )
    result = migrator_for(mariadb, database, location).migrate()
    assert result.applied == ["V1__abc.sql", "V2__d.sql"]
    assert [(r[0], r[1], r[3]) for r in history(mariadb, database)] == [
        ("V1__abc.sql", "success", 4),
        ("V2__d.sql", "success", 1),
    ]
    assert query(mariadb, database, "SELECT x FROM a") == [(1,)]


def test_resume_refused_when_a_completed_statement_changed(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(tmp_path, {"V1__abc.sql": FAILING_V1})
    with pytest.raises(StatementFailed):
        migrator_for(mariadb, database, location).migrate()
    changed = FAILING_V1.replace("CREATE TABLE b (x INT)", "CREATE TABLE b (x BIGINT)")
    (location / "V1__abc.sql").write_text(changed.replace("no_such_table", "a"))
    with pytest.raises(ValidationError) as caught:
        migrator_for(mariadb, database, location).migrate()
    message = str(caught.value)
    assert "V1__abc.sql: cannot resume: it failed at statement 3" in message
    assert "statements 1..2 completed, but they have changed since they ran" in message
    assert "scripts/migrate repair --restart" in message
    assert "c" not in tables(mariadb, database)

    # The documented way out: undo the partial work, then restart the migration from scratch.
    query(mariadb, database, "DROP TABLE a, b")
    assert migrator_for(mariadb, database, location).repair("restart")
    assert migrator_for(mariadb, database, location).migrate().applied == ["V1__abc.sql"]
    assert {"a", "b", "c"} <= tables(mariadb, database)


def test_failure_inside_a_scripts_transaction_rolls_it_back_and_resumes_at_its_start(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    script = (
        "CREATE TABLE t (x INT) ENGINE=InnoDB;\n"
        "START TRANSACTION;\n"
        "INSERT INTO t VALUES (1);\n"
        "INSERT INTO missing VALUES (2);\n"
        "COMMIT;\n"
    )
    location = write_migrations(tmp_path, {"V1__tx.sql": script})
    with pytest.raises(StatementFailed, match="resumes at statement 2"):
        migrator_for(mariadb, database, location).migrate()
    assert query(mariadb, database, "SELECT COUNT(*) FROM t") == [(0,)]
    assert history(mariadb, database) == [("V1__tx.sql", "failed", 0, 1)]
    (location / "V1__tx.sql").write_text(script.replace("missing", "t"))
    migrator_for(mariadb, database, location).migrate()
    assert query(mariadb, database, "SELECT x FROM t ORDER BY x") == [(1,), (2,)]


def test_lock_timeout_names_the_holder(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(tmp_path, {"V1__a.sql": "CREATE TABLE a (x INT);"})
    holder = mariadb.connect(database)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0), CONNECTION_ID()", (default_lock_name(database),))
            got, holder_id = one_row(cur)
        assert got == 1
        started = time.monotonic()
        with pytest.raises(LockTimeoutError) as caught:
            migrator_for(mariadb, database, location, lock_wait_seconds=0.5).migrate()
        assert time.monotonic() - started < 5
        message = str(caught.value)
        assert f"connection {holder_id} ({mariadb.admin_user}@127.0.0.1" in message
        assert "gave up after waiting 0.5s" in message
        assert "a" not in tables(mariadb, database)
    finally:
        holder.close()
    assert migrator_for(mariadb, database, location).migrate().applied == ["V1__a.sql"]


def _hold_table(mariadb: MariaDBServer, database: str, table: str):
    """A connection with an open transaction that read `table` (holds its metadata lock)."""
    conn = mariadb.connect(database, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION")
        cur.execute(f"SELECT * FROM {table}")
        cur.fetchall()
    return conn


def test_metadata_lock_wait_is_bounded_and_retried_with_backoff(
    mariadb: MariaDBServer, database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    location = write_migrations(tmp_path, {"V1__a.sql": "CREATE TABLE a (x INT);"})
    migrator_for(mariadb, database, location).migrate()
    write_migrations(location, {"V2__alter.sql": "ALTER TABLE a ADD COLUMN y INT;"})
    holder = _hold_table(mariadb, database, "a")
    release = threading.Timer(1.6, holder.commit)
    release.start()
    try:
        with caplog.at_level(logging.WARNING, logger="migrator"):
            started = time.monotonic()
            result = migrator_for(
                mariadb,
                database,
                location,
                statement_lock_wait_seconds=1,
                statement_retries=4,
                statement_retry_backoff=0.2,
            ).migrate()
        elapsed = time.monotonic() - started
    finally:
        release.join()
        holder.close()
    assert result.applied == ["V2__alter.sql"]
    assert elapsed > 1.0  # it really waited for the other session
    assert any("(error 1205); retry 1/4" in r.getMessage() for r in caplog.records)


def test_metadata_lock_that_never_clears_fails_after_bounded_retries(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(tmp_path, {"V1__a.sql": "CREATE TABLE a (x INT);"})
    migrator_for(mariadb, database, location).migrate()
    write_migrations(location, {"V2__alter.sql": "SELECT 1;\nALTER TABLE a ADD COLUMN y INT;"})
    holder = _hold_table(mariadb, database, "a")
    try:
        started = time.monotonic()
        with pytest.raises(StatementFailed) as caught:
            migrator_for(
                mariadb,
                database,
                location,
                statement_lock_wait_seconds=1,
                statement_retries=1,
                statement_retry_backoff=0.1,
            ).migrate()
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert elapsed < 6
    failure = caught.value
    assert (failure.statement_number, failure.line, failure.error_code) == (2, 2, 1205)
    assert "gave up after 2 attempts, each waiting up to 1s" in str(failure)
    assert history(mariadb, database)[-1] == ("V2__alter.sql", "failed", 0, 1)
    # Once the table is free, the next run resumes at the ALTER.
    assert migrator_for(mariadb, database, location).migrate().applied == ["V2__alter.sql"]


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "migrate"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_eight_racing_processes_apply_each_migration_exactly_once(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    files = {"V1__log.sql": "CREATE TABLE applied_log (script VARCHAR(50) NOT NULL);"}
    for n in range(2, 7):
        files[f"V{n}__step.sql"] = (
            f"INSERT INTO applied_log VALUES ('V{n}');\nSELECT SLEEP(0.1);\n"
            f"CREATE TABLE t{n} (x INT);"
        )
    location = write_migrations(tmp_path, files)
    env = dict(os.environ, APPDB_MIGRATE_DSN=mariadb.dsn(database))
    args = ("migrate", "--locations", str(location), "--ca-bundle", str(mariadb.ca_path))
    racers = [_cli(*args, env=env) for _ in range(8)]
    outputs = [p.communicate(timeout=120) for p in racers]
    assert [p.returncode for p in racers] == [0] * 8, outputs
    applied_lines = [line for out, _ in outputs for line in out.splitlines() if "applied V" in line]
    assert len(applied_lines) == 6  # every migration applied by exactly one process
    assert sum("up to date at version 6" in out for out, _ in outputs) >= 1
    log = query(mariadb, database, "SELECT script FROM applied_log ORDER BY script")
    assert log == [(f"V{n}",) for n in range(2, 7)]
    assert [(r[1], r[2]) for r in history(mariadb, database)] == [("success", 1)] * 6


SLOW_V1 = (
    "CREATE TABLE before_kill (x INT);\n"
    "-- a long statement\n"
    "SELECT SLEEP({seconds});\n"
    "CREATE TABLE after_kill (x INT);\n"
)


def _start_and_wait_for_the_long_statement(
    mariadb: MariaDBServer, database: str, common: tuple[str, ...], env: dict[str, str]
) -> subprocess.Popen[str]:
    victim = _cli("migrate", *common, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if history(mariadb, database) == [("V1__slow.sql", "in_progress", 0, 1)]:
                time.sleep(0.3)  # let the SLEEP start on the server
                return victim
        except Exception:
            pass
        time.sleep(0.05)
    victim.kill()
    pytest.fail("the migration never reached its long statement")


def test_a_killed_migrator_leaves_the_server_to_finish_the_file_and_history_exact(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(
        tmp_path,
        {"V1__slow.sql": SLOW_V1.format(seconds=3), "V2__next.sql": "CREATE TABLE next (x INT);"},
    )
    env = dict(os.environ, APPDB_MIGRATE_DSN=mariadb.dsn(database))
    common = ("--locations", str(location), "--ca-bundle", str(mariadb.ca_path))
    victim = _start_and_wait_for_the_long_statement(mariadb, database, common, env)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()

    # Right after the kill, history says statement 2 is in flight: the truth at that moment.
    assert history(mariadb, database) == [("V1__slow.sql", "in_progress", 0, 1)]
    assert "after_kill" not in tables(mariadb, database)
    # The server finishes the packet it was sent, recording each statement, and only then
    # drops the connection and its lock: the next run waits for it and needs no repair.
    result = migrator_for(mariadb, database, location, lock_wait_seconds=20).migrate()
    assert result.applied == ["V2__next.sql"]
    assert {"before_kill", "after_kill", "next"} <= tables(mariadb, database)
    assert history(mariadb, database) == [
        ("V1__slow.sql", "success", 1, 3),
        ("V2__next.sql", "success", 1, 1),
    ]


def test_a_session_lost_mid_statement_is_reported_and_resolved_with_one_command(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(tmp_path, {"V1__slow.sql": SLOW_V1.format(seconds=30)})
    env = dict(os.environ, APPDB_MIGRATE_DSN=mariadb.dsn(database))
    common = ("--locations", str(location), "--ca-bundle", str(mariadb.ca_path))
    victim = _start_and_wait_for_the_long_statement(mariadb, database, common, env)
    # The migrator's host dies and the server loses the session (failover, crash, or an
    # operator's KILL: the documented way to stop a running migration).
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    [(session,)] = query(
        mariadb,
        database,
        "SELECT id FROM information_schema.PROCESSLIST "
        "WHERE info LIKE %s AND id <> CONNECTION_ID()",
        ("%SLEEP(30)%",),
    )
    query(mariadb, database, f"KILL {int(session)}")

    # History never claims success; the next run waits for the dead session's lock to be
    # freed, then names the in-flight statement and the command.
    assert history(mariadb, database) == [("V1__slow.sql", "in_progress", 0, 1)]
    with pytest.raises(InterruptedMigrationError) as caught:
        migrator_for(mariadb, database, location, lock_wait_seconds=20).migrate()
    message = str(caught.value)
    assert "V1__slow.sql was interrupted while statement 2 of 3 (line 3: 'SELECT SLEEP(30)')" in (
        message
    )
    assert "scripts/migrate repair --mark-done" in message
    assert "after_kill" not in tables(mariadb, database)

    fixed = _cli("repair", "--mark-done", *common, env=env)
    out, err = fixed.communicate(timeout=60)
    assert fixed.returncode == 0, err
    assert "V1__slow.sql: statement 2 marked done; the next migrate continues at statement 3" in out
    done = _cli("migrate", *common, env=env)
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    assert "applied V1__slow.sql" in out
    assert {"before_kill", "after_kill"} <= tables(mariadb, database)
    assert history(mariadb, database) == [("V1__slow.sql", "success", 1, 3)]


def test_a_vanished_migrator_host_frees_the_lock_after_the_idle_timeout(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(
        tmp_path,
        # V1 changes its session, so V2 starts a packet of its own (after a reset).
        {
            "V1__a.sql": "CREATE TABLE a (x INT);\nSET @x = 1;",
            "V2__b.sql": "CREATE TABLE b (x INT);",
        },
    )
    victim = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "vanishing_migrator.py"),
            mariadb.host,
            str(mariadb.port),
            mariadb.admin_password,
            str(mariadb.ca_path),
            database,
            str(location),
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while not _stopped(victim.pid):
            assert time.monotonic() < deadline, "the victim never reached V2"
            time.sleep(0.05)
        started = time.monotonic()
        result = migrator_for(mariadb, database, location, lock_wait_seconds=30).migrate()
        waited = time.monotonic() - started
    finally:
        victim.kill()
        victim.wait()
    assert result.applied == ["V2__b.sql"]
    assert 1.5 < waited < 15, waited  # freed by the 2 s idle timeout, not after hours
    assert history(mariadb, database) == [
        ("V1__a.sql", "success", 1, 2),
        ("V2__b.sql", "success", 1, 1),
    ]


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_long_snapshot_wait_keeps_the_idle_session_alive(
    mariadb: MariaDBServer, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = write_migrations(tmp_path, {"V1__a.sql": "CREATE TABLE a (x INT);"})

    def slow_snapshot(settings: SnapshotSettings, target_version: str | None) -> str:
        time.sleep(3.5)  # longer than the session's 1 s wait_timeout
        return f"{settings.instance_identifier}-pre-v{target_version}"

    monkeypatch.setattr(engine, "create_pre_migration_snapshot", slow_snapshot)
    result = migrator_for(
        mariadb,
        database,
        location,
        idle_timeout_seconds=1,
        snapshot=SnapshotSettings(instance_identifier="appdb"),
    ).migrate()
    assert (result.snapshot_id, result.applied) == ("appdb-pre-v1", ["V1__a.sql"])
    assert history(mariadb, database) == [("V1__a.sql", "success", 1, 1)]


def test_repair_retry_runs_the_interrupted_statement_again(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(
        tmp_path, {"V1__two.sql": "CREATE TABLE one (x INT);\nCREATE TABLE two (x INT);\n"}
    )
    migrator_for(mariadb, database, location).migrate()
    # Simulate what a kill -9 leaves behind during statement 2 (which had not taken effect).
    query(mariadb, database, "DROP TABLE two")
    query(
        mariadb,
        database,
        "UPDATE schema_history SET state='in_progress', success=0, statements_done=1, "
        "statement_checksums=SUBSTRING_INDEX(statement_checksums, ' ', 1)",
    )
    with pytest.raises(InterruptedMigrationError):
        migrator_for(mariadb, database, location).migrate()
    messages = migrator_for(mariadb, database, location).repair("retry")
    assert messages == ["V1__two.sql: statement 2 will run again on the next migrate"]
    assert migrator_for(mariadb, database, location).migrate().applied == ["V1__two.sql"]
    assert "two" in tables(mariadb, database)


def test_failure_in_the_first_statement_of_a_later_migration(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    # V2's history row is inserted by the write that marks V1 a success: check the pair.
    location = write_migrations(
        tmp_path,
        {
            "V1__ok.sql": "CREATE TABLE one (x INT);\nINSERT INTO one VALUES (1);",
            "V2__bad.sql": "INSERT INTO nowhere VALUES (1);\nCREATE TABLE two (x INT);",
            "V3__later.sql": "CREATE TABLE three (x INT);",
        },
    )
    with pytest.raises(StatementFailed) as caught:
        migrator_for(mariadb, database, location).migrate()
    assert (caught.value.script, caught.value.statement_number) == ("V2__bad.sql", 1)
    assert history(mariadb, database) == [
        ("V1__ok.sql", "success", 1, 2),
        ("V2__bad.sql", "failed", 0, 0),
    ]
    (location / "V2__bad.sql").write_text("INSERT INTO one VALUES (2);\nCREATE TABLE two (x INT);")
    assert migrator_for(mariadb, database, location).migrate().applied == [
        "V2__bad.sql",
        "V3__later.sql",
    ]
    assert [r[1] for r in history(mariadb, database)] == ["success"] * 3
    times = query(mariadb, database, "SELECT execution_time FROM schema_history")
    assert all(t >= 0 for (t,) in times)


# -- messages (issue 11, point 8) and the checksum promise (point 9) -------------------------


def test_a_syntax_error_names_file_statement_and_line_and_quotes_only_the_users_sql(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    script = (
        "CREATE TABLE a (x INT);\n"
        "INSERT INTO a VALUES (1);\n"
        "INSERT INTO a VALUES (2) oops;\n"
        "INSERT INTO a VALUES (3);\n"
    )
    location = write_migrations(tmp_path, {"V1__typo.sql": script})
    with pytest.raises(StatementFailed) as caught:
        migrator_for(mariadb, database, location).migrate()
    message = str(caught.value)
    assert message.startswith("V1__typo.sql: statement 3 (line 3) failed: server error 1064")
    assert "near 'oops'" in message
    [(stored,)] = query(mariadb, database, "SELECT error FROM schema_history")
    for text in (message, stored):
        assert "schema_history" not in text and "statements_done" not in text
        assert "INSERT INTO a VALUES (3)" not in text
    assert "near 'oops'" in stored


def test_a_history_write_the_script_prevents_names_the_statement(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    # A script that makes its own session read-only leaves the engine unable to write history
    # on it: the failure names the statement after which progress could not be recorded, and
    # history (written on the engine's other connection) says exactly how far it got.
    script = "CREATE TABLE a (x INT);\nSET SESSION TRANSACTION READ ONLY;\nSELECT 1;\n"
    location = write_migrations(tmp_path, {"V1__read_only.sql": script})
    with pytest.raises(MigrationError) as caught:
        migrator_for(mariadb, database, location).migrate()
    message = str(caught.value)
    assert "V1__read_only.sql: cannot record progress after statement 2 (line 2)" in message
    assert "server error 1792" in message
    assert history(mariadb, database) == [("V1__read_only.sql", "failed", 0, 2)]


def test_the_interrupted_message_does_not_claim_the_run_was_killed(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(tmp_path, {"V1__two.sql": "SELECT 1;\nSELECT 2;\n"})
    migrator_for(mariadb, database, location).migrate()
    query(
        mariadb,
        database,
        "UPDATE schema_history SET state='in_progress', success=0, statements_done=1",
    )
    with pytest.raises(InterruptedMigrationError) as caught:
        migrator_for(mariadb, database, location).migrate()
    message = str(caught.value)
    assert "died" not in message and "killed" not in message
    assert "did not finish it" in message and "repair --mark-done" in message


def test_comments_and_whitespace_may_change_in_completed_statements(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(tmp_path, {"V1__abc.sql": FAILING_V1})
    with pytest.raises(StatementFailed):
        migrator_for(mariadb, database, location).migrate()
    # A comment inside a completed statement, one between statements, and new indentation.
    commented = (
        "-- the first table\n"
        "CREATE TABLE a (\n  x INT -- its only column\n);\n"
        "CREATE   TABLE b /* second */ (x INT);\n"
        "INSERT INTO a VALUES (1);\n"
        "CREATE TABLE c (x INT);\n"
    )
    (location / "V1__abc.sql").write_text(commented)
    assert migrator_for(mariadb, database, location).migrate().applied == ["V1__abc.sql"]
    assert {"a", "b", "c"} <= tables(mariadb, database)
