"""What a script does to its session: LOCK TABLES, SET AUTOCOMMIT=0, session state that must
not leak into the next migration, and the session state a resumed migration must get back.
Each compared with the `mariadb` client where the client is the reference."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from migrator_support import (
    apply_with_client,
    dump,
    history,
    migrator_for,
    query,
    run_cli,
    run_client,
    schema_snapshot,
    tables,
    write_migrations,
)

from migrator.errors import StatementFailed, ValidationError
from standins.mariadb import MariaDBServer


def _write(location: Path, files: dict[str, bytes | str]) -> Path:
    location.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (location / name).write_bytes(data)
    return location


# -- 1. LOCK TABLES ---------------------------------------------------------------------------

LOCKED = (
    "CREATE TABLE t (x INT PRIMARY KEY);\n"
    "LOCK TABLES t WRITE;\n"
    "INSERT INTO t VALUES (1);\n"
    "INSERT INTO t VALUES (2), ('not a number');\n"
    "INSERT INTO t VALUES (3);\n"
    "UNLOCK TABLES;\n"
)


def test_lock_tables_keeps_history_exact_and_a_failure_inside_it_is_resumable(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(tmp_path, {"V1__locked.sql": LOCKED})
    with pytest.raises(StatementFailed) as caught:
        migrator_for(mariadb, database, location).migrate()
    assert (caught.value.statement_number, caught.value.line) == (4, 4)
    # Statements 1..3 completed and are recorded, inside the LOCK TABLES section too.
    assert history(mariadb, database) == [("V1__locked.sql", "failed", 0, 3)]
    assert query(mariadb, database, "SELECT x FROM t") == [(1,)]
    # Resuming re-establishes the lock the completed statements took, then goes on.
    (location / "V1__locked.sql").write_text(LOCKED.replace(", ('not a number')", ""))
    assert migrator_for(mariadb, database, location).migrate().applied == ["V1__locked.sql"]
    assert query(mariadb, database, "SELECT x FROM t ORDER BY x") == [(1,), (2,), (3,)]
    assert history(mariadb, database) == [("V1__locked.sql", "success", 1, 6)]


# -- 2. SET AUTOCOMMIT=0 ----------------------------------------------------------------------


def test_a_failure_after_set_autocommit_0_is_recorded_durably_and_resumes(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    script = (
        "SET AUTOCOMMIT=0;\n"
        "CREATE TABLE t (x INT);\n"
        "INSERT INTO t VALUES (1);\n"
        "INSERT INTO nowhere VALUES (1);\n"
        "COMMIT;\n"
    )
    location = write_migrations(tmp_path, {"V1__no_autocommit.sql": script})
    with pytest.raises(StatementFailed):
        migrator_for(mariadb, database, location).migrate()
    # The engine's connection is closed: what it wrote must have been committed. The INSERT
    # that was not committed is rolled back, as the client's session end rolls it back.
    assert history(mariadb, database) == [("V1__no_autocommit.sql", "failed", 0, 2)]
    assert query(mariadb, database, "SELECT COUNT(*) FROM t") == [(0,)]
    (location / "V1__no_autocommit.sql").write_text(script.replace("nowhere", "t"))
    assert migrator_for(mariadb, database, location).migrate().applied == ["V1__no_autocommit.sql"]
    assert query(mariadb, database, "SELECT x FROM t ORDER BY x") == [(1,), (1,)]
    assert history(mariadb, database) == [("V1__no_autocommit.sql", "success", 1, 5)]


def test_a_file_that_ends_with_autocommit_off_is_applied_durably(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    # The world/sakila data files' ending: autocommit still off after the last COMMIT, here
    # with a CALL last (its results are read to the end, so the success write follows it).
    script = (
        "CREATE TABLE t (x INT);\n"
        "DELIMITER //\nCREATE PROCEDURE noop() BEGIN SELECT 1; END//\nDELIMITER ;\n"
        "SET AUTOCOMMIT=0;\n"
        "INSERT INTO t VALUES (1);\n"
        "COMMIT;\n"
        "CALL noop();\n"
    )
    location = write_migrations(tmp_path, {"V1__ends_autocommit_off.sql": script})
    env = dict(os.environ, APPDB_MIGRATE_DSN=mariadb.dsn(database))
    common = ("--locations", str(location), "--ca-bundle", str(mariadb.ca_path))
    first = run_cli("migrate", *common, env=env)
    assert first.returncode == 0, first.stderr
    assert history(mariadb, database) == [("V1__ends_autocommit_off.sql", "success", 1, 6)]
    again = run_cli("migrate", *common, env=env)
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout


# -- 3. every migration starts from the same session -----------------------------------------

PROBE = (
    "CREATE TABLE IF NOT EXISTS probe (script VARCHAR(20), cs VARCHAR(40), fk INT, "
    "mode VARCHAR(200), tz VARCHAR(20), ac INT, x VARCHAR(10), db VARCHAR(64), "
    "word VARCHAR(10)) DEFAULT CHARSET=utf8mb4;\n"
    "INSERT INTO probe VALUES ('{name}', @@character_set_client, @@foreign_key_checks, "
    "@@sql_mode, @@time_zone, @@autocommit, @x, DATABASE(), 'é');\n"
)


def test_no_session_state_leaks_from_one_migration_into_the_next(
    mariadb: MariaDBServer, tmp_path: Path
) -> None:
    other = mariadb.create_database("elsewhere")
    dirty = (
        "SET NAMES latin1;\n"
        "SET FOREIGN_KEY_CHECKS=0;\n"
        "SET SESSION sql_mode='ANSI';\n"
        "SET time_zone='+05:00';\n"
        "SET @x = 'leaked';\n"
        "CREATE TEMPORARY TABLE scratch (a INT);\n"
        "SET AUTOCOMMIT=0;\n"
        f"/*!40000 USE `{other}` */;\n"
    )
    location = _write(
        tmp_path,
        {
            "V1__probe.sql": PROBE.format(name="V1"),
            "V2__dirty.sql": dirty,
            "V3__probe.sql": PROBE.format(name="V3")
            + "CREATE TABLE scratch (b INT);\n",  # the temporary table must be gone
        },
    )
    by_client = mariadb.create_database("by_client")
    apply_with_client(mariadb, by_client, location)
    by_engine = mariadb.create_database("by_engine")
    migrator_for(mariadb, by_engine, location).migrate()
    probe = "SELECT script, cs, fk, mode, tz, ac, x, REPLACE(db, %s, '<db>'), HEX(word) FROM probe"
    expected = query(mariadb, by_client, probe + " ORDER BY script", (by_client,))
    assert [row[0] for row in expected] == ["V1", "V3"] and expected[0][1:] == expected[1][1:]
    assert query(mariadb, by_engine, probe + " ORDER BY script", (by_engine,)) == expected
    assert "probe" not in tables(mariadb, other)


# -- 4. resume re-establishes the session the completed statements set up ---------------------


def test_a_resumed_migration_runs_in_the_session_its_completed_statements_set_up(
    mariadb: MariaDBServer, tmp_path: Path
) -> None:
    other = mariadb.create_database("resume_other")
    broken = (
        f"USE `{other}`;\n"
        "SET @x = 5;\n"
        "SET NAMES latin1;\n"
        "SET @@session.sql_mode = 'NO_BACKSLASH_ESCAPES';\n"
        "CREATE TABLE a (v VARCHAR(20)) DEFAULT CHARSET=utf8mb4;\n"
        "INSERT INTO nowhere VALUES (1);\n"
        "CREATE TABLE b (x INT, s VARCHAR(20), raw VARCHAR(20)) DEFAULT CHARSET=utf8mb4;\n"
        "INSERT INTO b VALUES (@x, 'é', 'a\\b');\n"
    )
    fixed = broken.replace("INSERT INTO nowhere VALUES (1)", "INSERT INTO a VALUES ('é')")
    location = _write(tmp_path / "engine", {"V1__resume.sql": broken})
    target = mariadb.create_database("resume_target")
    with pytest.raises(StatementFailed):
        migrator_for(mariadb, target, location).migrate()
    (location / "V1__resume.sql").write_text(fixed)
    assert migrator_for(mariadb, target, location).migrate().applied == ["V1__resume.sql"]
    engine_rows = query(mariadb, other, "SELECT x, HEX(s), raw FROM b")
    engine_a = query(mariadb, other, "SELECT HEX(v) FROM a")

    # The client applying the fixed file in one go is the reference.
    reference = mariadb.create_database("resume_ref")
    client_file = _write(tmp_path / "client", {"V1__resume.sql": fixed.replace(other, reference)})
    run_client(mariadb, reference, client_file / "V1__resume.sql")
    assert engine_rows == query(mariadb, reference, "SELECT x, HEX(s), raw FROM b")
    assert engine_a == query(mariadb, reference, "SELECT HEX(v) FROM a")
    assert engine_rows[0][0] == 5 and engine_rows[0][2] == "a\\b"
    assert not {"a", "b"} & tables(mariadb, target)


def test_a_dump_resumed_after_a_failure_in_the_middle_equals_the_clients_apply(
    mariadb: MariaDBServer, tmp_path: Path
) -> None:
    source = mariadb.create_database("dump_src")
    conn = mariadb.root_connection(source)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE first (id INT PRIMARY KEY, s VARCHAR(20)) CHARSET=utf8mb4")
        cur.execute("INSERT INTO first VALUES (1, 'ü'), (2, 'ß')")
        cur.execute("CREATE TABLE second (id INT PRIMARY KEY, b BLOB)")
        cur.execute("INSERT INTO second VALUES (1, UNHEX('00FFC3'))")
    conn.close()
    content = dump(mariadb, source)
    marker = b"UNLOCK TABLES;\n"
    at = content.index(marker) + len(marker)  # after the first table's data
    broken = content[:at] + b"INSERT INTO nowhere VALUES (1);\n" + content[at:]
    location = _write(tmp_path, {"V1__dump.sql": broken})
    target = mariadb.create_database("dump_target")
    with pytest.raises(StatementFailed):
        migrator_for(mariadb, target, location).migrate()
    (location / "V1__dump.sql").write_bytes(content)  # the fix: the bad line removed
    assert migrator_for(mariadb, target, location).migrate().applied == ["V1__dump.sql"]
    reference = mariadb.create_database("dump_ref")
    apply_with_client(mariadb, reference, location)
    assert schema_snapshot(mariadb, target) == schema_snapshot(mariadb, reference)
    # The dump's footer restored what its header saved: the session is as a fresh one.
    assert history(mariadb, target)[0][1] == "success"


def test_resume_is_refused_when_a_lost_session_value_is_still_needed(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    script = (
        "CREATE TABLE a (x INT);\n"
        "INSERT INTO a VALUES (1), (2);\n"
        "SET @n = (SELECT COUNT(*) FROM a);\n"
        "INSERT INTO nowhere VALUES (1);\n"
        "CREATE TABLE b (n INT);\n"
        "INSERT INTO b VALUES (@n);\n"
    )
    location = write_migrations(tmp_path, {"V1__needs_n.sql": script})
    with pytest.raises(StatementFailed):
        migrator_for(mariadb, database, location).migrate()
    (location / "V1__needs_n.sql").write_text(script.replace("nowhere", "a"))
    with pytest.raises(ValidationError) as caught:
        migrator_for(mariadb, database, location).migrate()
    message = str(caught.value)
    assert "V1__needs_n.sql: cannot resume at statement 4" in message
    assert "statement 3 (line 3) set @n" in message
    assert "statement 6 (line 6)" in message
    assert "scripts/migrate repair --restart" in message
    assert "b" not in tables(mariadb, database)
    # The documented way out works.
    query(mariadb, database, "DROP TABLE a")
    migrator_for(mariadb, database, location).repair("restart")
    migrator_for(mariadb, database, location).migrate()
    assert query(mariadb, database, "SELECT n FROM b") == [(2,)]


def test_a_run_stopped_at_its_deadline_resumes_in_the_session_it_had(
    mariadb: MariaDBServer, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stop_after (the in-VPC function's deadline) stops between packets, here one statement
    # each; every next run resumes with the USE and SET before its resume point run again.
    from migrator import engine

    other = mariadb.create_database("deadline_other")
    monkeypatch.setattr(engine, "_PACKET_BYTES", 1)
    script = (
        f"USE `{other}`;\nSET @x = 5;\nCREATE TABLE a (x INT);\nINSERT INTO a VALUES (@x);\n"
        "INSERT INTO a VALUES (@x + 1);\n"
    )
    location = write_migrations(tmp_path, {"V1__slow.sql": script})
    stops = []
    for _ in range(20):
        result = migrator_for(mariadb, database, location, stop_after=0.0).migrate()
        if result.stopped is None:
            break
        stops.append(result.stopped.statement)
    assert len(stops) >= 3 and stops == sorted(stops)
    assert query(mariadb, other, "SELECT x FROM a ORDER BY x") == [(5,), (6,)]
    assert history(mariadb, database) == [("V1__slow.sql", "success", 1, 5)]
