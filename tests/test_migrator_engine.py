"""The engine against the real MariaDB: apply, re-run, validate, repeatables, USE."""

from __future__ import annotations

from pathlib import Path

import pymysql
import pytest
from migrator_support import (
    ROOT,
    history,
    migrator_for,
    one_row,
    pymysql_execute_command,
    query,
    tables,
    write_migrations,
)

from migrator import engine
from migrator.errors import MigrationError, ValidationError
from standins.mariadb import MariaDBServer


def test_fresh_apply_then_idempotent_rerun(mariadb: MariaDBServer, database: str) -> None:
    migrator = migrator_for(mariadb, database, ROOT / "schema")
    result = migrator.migrate()
    assert result.applied == [
        "V1__create_users.sql",
        "V2__add_preferences_and_user_sessions.sql",
        "V3__session_routines.sql",
    ]
    assert result.current_version == "3"
    assert result.checksums == migrator.applied_checksums() == migrator.migrations.checksums()
    assert {"users", "user_sessions", "schema_history"} <= tables(mariadb, database)
    rows = history(mariadb, database)
    assert [(r[1], r[2]) for r in rows] == [("success", 1)] * 3

    again = migrator_for(mariadb, database, ROOT / "schema").migrate()
    assert again.applied == []
    assert again.current_version == "3"
    assert len(history(mariadb, database)) == 3
    assert migrator.applied_checksums() == migrator.migrations.checksums()
    assert [r.state for r in migrator.info()] == ["applied"] * 3


def test_history_columns_record_who_when_how_long(mariadb: MariaDBServer, database: str) -> None:
    migrator_for(mariadb, database, ROOT / "schema").migrate()
    row = query(
        mariadb,
        database,
        "SELECT version, description, script, checksum, installed_by, installed_on, "
        "execution_time, success FROM schema_history ORDER BY installed_rank LIMIT 1",
    )[0]
    version, description, script, checksum, who, when, ms, success = row
    assert (version, description, script) == ("1", "create users", "V1__create_users.sql")
    assert len(checksum) == 64 and who == mariadb.admin_user and when is not None
    assert ms >= 0 and success == 1


def test_new_migration_applies_only_itself(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(tmp_path, {"V1__a.sql": "CREATE TABLE a (x INT);"})
    migrator_for(mariadb, database, location).migrate()
    write_migrations(tmp_path, {"V1.1__b.sql": "CREATE TABLE b (x INT);"})
    migrator = migrator_for(mariadb, database, location)
    assert [m.script for m in migrator.pending()] == ["V1.1__b.sql"]
    assert migrator.migrate().applied == ["V1.1__b.sql"]
    assert {"a", "b"} <= tables(mariadb, database)


def test_changed_and_missing_applied_files_are_errors_naming_them(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(
        tmp_path,
        {"V1__a.sql": "CREATE TABLE a (x INT);", "V2__b.sql": "CREATE TABLE b (x INT);"},
    )
    migrator_for(mariadb, database, location).migrate()
    (location / "V1__a.sql").write_text("CREATE TABLE a (x BIGINT);")
    (location / "V2__b.sql").unlink()
    write_migrations(location, {"V3__c.sql": "CREATE TABLE c (x INT);"})
    with pytest.raises(ValidationError) as caught:
        migrator_for(mariadb, database, location).migrate()
    message = str(caught.value)
    assert "V1__a.sql: applied migration changed since it was applied" in message
    assert "V2__b.sql: applied migration's file is missing" in message
    assert "c" not in tables(mariadb, database)  # nothing ran
    with pytest.raises(ValidationError):
        migrator_for(mariadb, database, location).validate()
    # The documented override: report, don't fail.
    result = migrator_for(mariadb, database, location, ignore_changed=True).migrate()
    assert result.applied == ["V3__c.sql"]


def test_crlf_only_change_is_not_a_change(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(tmp_path, {"V1__a.sql": "CREATE TABLE a (x INT);\nSELECT 1;\n"})
    migrator_for(mariadb, database, location).migrate()
    (location / "V1__a.sql").write_bytes(b"CREATE TABLE a (x INT);\r\nSELECT 1;\r\n")
    migrator_for(mariadb, database, location).validate()
    assert migrator_for(mariadb, database, location).migrate().applied == []


def test_out_of_order_is_an_error_unless_allowed(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(tmp_path, {"V2__b.sql": "CREATE TABLE b (x INT);"})
    migrator_for(mariadb, database, location).migrate()
    write_migrations(location, {"V1.5__late.sql": "CREATE TABLE late (x INT);"})
    with pytest.raises(ValidationError, match=r"V1\.5__late\.sql: version 1\.5 is lower than"):
        migrator_for(mariadb, database, location).migrate()
    result = migrator_for(mariadb, database, location, out_of_order=True).migrate()
    assert result.applied == ["V1.5__late.sql"]
    assert result.current_version == "2"


def test_repeatables_run_after_versioned_and_again_when_changed(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(
        tmp_path,
        {
            "R__view.sql": "CREATE OR REPLACE VIEW v AS SELECT x FROM a;",
            "V1__a.sql": "CREATE TABLE a (x INT);",
        },
    )
    assert migrator_for(mariadb, database, location).migrate().applied == [
        "V1__a.sql",
        "R__view.sql",
    ]
    assert migrator_for(mariadb, database, location).migrate().applied == []
    write_migrations(
        location, {"R__view.sql": "CREATE OR REPLACE VIEW v AS SELECT x, 1 AS y FROM a;"}
    )
    rerun = migrator_for(mariadb, database, location)
    result = rerun.migrate()
    assert result.applied == ["R__view.sql"]
    # The run reports history as it now stands: the view's new checksum, V1's unchanged one.
    assert result.checksums == rerun.applied_checksums() == rerun.migrations.checksums()
    columns = query(
        mariadb,
        database,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'v' ORDER BY ordinal_position",
        (database,),
    )
    assert [c[0] for c in columns] == ["x", "y"]
    assert [r[0] for r in history(mariadb, database)].count("R__view.sql") == 2


def test_history_stays_in_target_schema_despite_use(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    other = mariadb.create_database("other")
    location = write_migrations(
        tmp_path,
        {
            "V1__elsewhere.sql": f"USE `{other}`;\nCREATE TABLE elsewhere (x INT);",
            "V2__here.sql": "CREATE TABLE here (x INT);",
        },
    )
    migrator_for(mariadb, database, location).migrate()
    assert "elsewhere" in tables(mariadb, other)
    assert "schema_history" not in tables(mariadb, other)
    assert {"here", "schema_history"} <= tables(mariadb, database)
    assert len(history(mariadb, database)) == 2


def test_delimiter_heavy_script_creates_working_routines(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(
        tmp_path,
        {
            "V1__routines.sql": (
                "/*!40101 SET @saved_cs = @@character_set_client */;\n"
                "CREATE TABLE counter (n INT NOT NULL);\n"
                "INSERT INTO counter VALUES (0);\n"
                "delimiter $$\n"
                "CREATE TRIGGER bump BEFORE UPDATE ON counter FOR EACH ROW\n"
                "BEGIN\n  IF NEW.n < 0 THEN SET NEW.n = 0; END IF;\nEND$$\n"
                "DELIMITER ;;\n"
                "CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC NO SQL\n"
                "BEGIN\n  DECLARE y INT; -- ; in a comment\n  SET y = x * 2;\n  RETURN y;\nEND;;\n"
                "DELIMITER ;\n"
                "UPDATE counter SET n = -5;\n"
            )
        },
    )
    migrator_for(mariadb, database, location).migrate()
    assert query(mariadb, database, "SELECT n, twice(21) FROM counter") == [(0, 42)]


def test_call_returning_result_sets_then_more_migrations(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(
        tmp_path,
        {
            "V1__proc.sql": (
                "CREATE TABLE seen (n INT);\n"
                "DELIMITER //\n"
                "CREATE PROCEDURE two_results()\nBEGIN\n"
                "  SELECT 1 AS a;\n  SELECT 2 AS b;\n  INSERT INTO seen VALUES (1);\nEND//\n"
                "DELIMITER ;\n"
                "CALL two_results();\n"
            ),
            "V2__after.sql": "INSERT INTO seen VALUES (2);",
        },
    )
    result = migrator_for(mariadb, database, location).migrate()
    assert result.applied == ["V1__proc.sql", "V2__after.sql"]
    assert query(mariadb, database, "SELECT n FROM seen ORDER BY n") == [(1,), (2,)]
    assert history(mariadb, database) == [
        ("V1__proc.sql", "success", 1, 3),
        ("V2__after.sql", "success", 1, 1),
    ]
    assert query(mariadb, database, "SELECT MIN(execution_time) >= 0 FROM schema_history") == [(1,)]


def _questions(server: MariaDBServer) -> int:
    conn = server.root_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
            return int(one_row(cur)[1])
    finally:
        conn.close()


def _statements_of_run(server: MariaDBServer, database: str, location: Path) -> int:
    probe = _questions(server)
    probe = _questions(server) - probe  # what one probe itself adds
    before = _questions(server)
    migrator_for(server, database, location).migrate()
    return _questions(server) - before - probe


def test_per_run_overhead_does_not_grow_with_history(
    mariadb: MariaDBServer, tmp_path: Path
) -> None:
    """One connection, one lock, one history read: a no-op run and a one-migration run cost
    the same number of statements with 3 or 30 applied migrations."""
    costs = {}
    for applied in (3, 30):
        database = mariadb.create_database("overhead")
        location = write_migrations(
            tmp_path / str(applied),
            {f"V{n}__t{n}.sql": f"CREATE TABLE t{n} (x INT);" for n in range(1, applied + 1)},
        )
        migrator_for(mariadb, database, location).migrate()
        noop = _statements_of_run(mariadb, database, location)
        write_migrations(location, {f"V{applied + 1}__new.sql": "CREATE TABLE new_one (x INT);"})
        one_more = _statements_of_run(mariadb, database, location)
        costs[applied] = (noop, one_more)
    assert costs[3] == costs[30]
    noop, one_more = costs[3]
    # pymysql's SET NAMES; SET SESSION lock_wait_timeout; GET_LOCK; waiting for an earlier
    # run's work session; the history read (two queries: every row's essentials, the failed
    # and in-progress rows' details); RELEASE_LOCK (and nothing per applied migration).
    assert noop <= 8
    # The work session's setup (4 statements, and pymysql's SET NAMES), max_allowed_packet,
    # the statement, its history INSERT and success UPDATE.
    assert one_more - noop <= 10


def test_server_error_outside_a_statement_is_one_migration_error(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    # A history table of another shape: the history read fails on the server. That is
    # reported like every other engine failure (one MigrationError), not as a raw pymysql
    # error that the CLI and the provider would show as a traceback.
    query(mariadb, database, "CREATE TABLE schema_history (id INT)")
    location = write_migrations(tmp_path, {"V1__a.sql": "CREATE TABLE a (x INT);"})
    migrator = migrator_for(mariadb, database, location)
    with pytest.raises(MigrationError, match=r"server error 1054: Unknown column") as caught:
        migrator.migrate()
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert mariadb.admin_password not in str(caught.value)
    assert "a" not in tables(mariadb, database)  # nothing applied


def _packets_of_run(
    server: MariaDBServer, database: str, location: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The SQL of every packet (COM_QUERY) the engine sends during one migrate()."""
    sent: list[str] = []
    original = pymysql_execute_command()

    def recording(self: pymysql.connections.Connection, command: int, sql: object) -> object:
        if command == 3:  # COM_QUERY
            sent.append(sql.decode() if isinstance(sql, bytes) else str(sql))
        return original(self, command, sql)

    with monkeypatch.context() as patch:
        patch.setattr(pymysql.connections.Connection, "_execute_command", recording)
        migrator_for(server, database, location).migrate()
    return sent


def test_migrations_travel_in_as_few_packets_as_their_session_allows(
    mariadb: MariaDBServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def files(first: str) -> dict[str, str]:
        return {
            f"V{n}__t{n}.sql": (
                f"{first}CREATE TABLE t{n} (id INT PRIMARY KEY);\n"
                f"ALTER TABLE t{n} ADD COLUMN v INT;\n"
                f"INSERT INTO t{n} VALUES (1, {n});\n"
            )
            for n in (1, 2, 3)
        }

    def carrying_statements(packets: list[str]) -> list[str]:
        return [p for p in packets if "TABLE t" in p or "INTO t" in p]

    # Migrations that leave the session as they found it share a packet: one round trip.
    together = mariadb.create_database()
    packets = carrying_statements(
        _packets_of_run(mariadb, together, write_migrations(tmp_path / "a", files("")), monkeypatch)
    )
    assert len(packets) == 1
    assert packets[0].count("statements_done=") == 9  # 2 progress + 1 success each
    assert query(mariadb, together, "SELECT id, v FROM t3") == [(1, 3)]

    # One that changes its session gets a packet of its own, and the next a fresh session.
    apart = mariadb.create_database()
    location = write_migrations(tmp_path / "b", files("SET foreign_key_checks = 0;\n"))
    packets = carrying_statements(_packets_of_run(mariadb, apart, location, monkeypatch))
    assert len(packets) == 3

    monkeypatch.setattr(engine, "_PACKET_BYTES", 1)  # every statement outgrows it
    capped = mariadb.create_database()
    packets = carrying_statements(_packets_of_run(mariadb, capped, tmp_path / "a", monkeypatch))
    assert len(packets) == 9  # each statement alone
    for database in (together, apart, capped):
        assert history(mariadb, database) == [
            (f"V{n}__t{n}.sql", "success", 1, 3 + (database == apart)) for n in (1, 2, 3)
        ]
