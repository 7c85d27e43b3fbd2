"""Statements that only write InnoDB tables travel in transactions with their history: one
commit per packet, and a session lost in the middle rolls both back, so the next run knows
exactly where to go on (no `repair`). Anything else stays one statement at a time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pymysql
import pytest
from migrator_support import (
    history,
    migrator_for,
    pymysql_execute_command,
    query,
    schema_snapshot,
    write_migrations,
)

from migrator import engine
from migrator.errors import MigrationError, StatementFailed
from standins.mariadb import MariaDBServer


def _sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []
    original = pymysql_execute_command()

    def recording(self: pymysql.connections.Connection, command: int, sql: object) -> object:
        if command == 3:
            sent.append(sql.decode("latin-1") if isinstance(sql, bytes) else str(sql))
        return original(self, command, sql)

    monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", recording)
    return sent


def _kill_when_running(server: MariaDBServer, database: str, marker: str) -> threading.Thread:
    """KILL the session that runs the statement containing `marker`, once it runs."""

    def kill() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = query(
                server,
                database,
                "SELECT id FROM information_schema.PROCESSLIST WHERE info LIKE %s "
                "AND id <> CONNECTION_ID()",
                (f"%{marker}%",),
            )
            if found:
                time.sleep(0.3)
                query(server, database, f"KILL {int(found[0][0])}")
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill)
    thread.start()
    return thread


FILES = {
    # V1 changes its session, so V2 starts a packet of its own.
    "V1__table.sql": "CREATE TABLE t (x INT PRIMARY KEY) ENGINE=InnoDB;\nSET @unused = 1;\n",
    "V2__rows.sql": (
        "INSERT INTO t VALUES (1);\n"
        "INSERT INTO t SELECT 2 + SLEEP({seconds});\n"
        "INSERT INTO t VALUES (3);\n"
    ),
}


def test_small_migrations_that_write_innodb_tables_share_one_transaction(
    mariadb: MariaDBServer, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"V1__t.sql": "CREATE TABLE t (x INT PRIMARY KEY);\nSET @a = 1;\n"}
    files |= {f"V{n}__row.sql": f"INSERT INTO t VALUES ({n});\n" for n in range(2, 12)}
    location = write_migrations(tmp_path, files)
    sent = _sent(monkeypatch)
    assert len(migrator_for(mariadb, database, location).migrate().applied) == 11
    transactions = [p for p in sent if "START TRANSACTION" in p]
    assert len(transactions) == 1 and transactions[0].count("INSERT INTO t VALUES") == 10
    assert transactions[0].endswith("COMMIT")
    assert query(mariadb, database, "SELECT COUNT(*) FROM t") == [(10,)]
    assert [r[1:] for r in history(mariadb, database)] == [
        ("success", 1, n) for n in [2] + [1] * 10
    ]


def test_a_session_lost_inside_a_transaction_is_resumed_without_repair(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    files = dict(FILES, **{"V2__rows.sql": FILES["V2__rows.sql"].format(seconds=30)})
    location = write_migrations(tmp_path, files)
    killer = _kill_when_running(mariadb, database, "SLEEP(30)")
    with pytest.raises(MigrationError):
        migrator_for(mariadb, database, location).migrate()
    killer.join()
    # Everything of V2 was rolled back, its history with it: it is simply pending.
    assert query(mariadb, database, "SELECT x FROM t") == []
    assert [r[0] for r in history(mariadb, database)] == ["V1__table.sql"]
    (location / "V2__rows.sql").write_text(FILES["V2__rows.sql"].format(seconds=0))
    assert migrator_for(mariadb, database, location).migrate().applied == ["V2__rows.sql"]
    assert query(mariadb, database, "SELECT x FROM t ORDER BY x") == [(1,), (2,), (3,)]


def test_a_migration_in_progress_lost_inside_a_transaction_resumes_where_it_was(
    mariadb: MariaDBServer, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small packets: the migration's first packet is its CREATE, its later ones transactions
    # of INSERTs; its row says so (in_flight), so the next run resumes on its own.
    monkeypatch.setattr(engine, "_PACKET_BYTES", 120)
    query(mariadb, database, "CREATE TABLE blocker (id INT PRIMARY KEY, x INT) ENGINE=InnoDB")
    query(mariadb, database, "INSERT INTO blocker VALUES (1, 0)")
    script = (
        "CREATE TABLE t (x INT PRIMARY KEY);\n"
        + "".join(f"INSERT INTO t VALUES ({n});\n" for n in range(1, 6))
        + "UPDATE blocker SET x = x + 1 WHERE id = 1;\n"
        + "INSERT INTO t VALUES (7);\n"
    )
    location = write_migrations(tmp_path, {"V1__long.sql": script})
    holder = mariadb.connect(database, autocommit=False)  # holds the row the UPDATE needs
    with holder.cursor() as cur:
        cur.execute("SELECT * FROM blocker WHERE id = 1 FOR UPDATE")
    killer = _kill_when_running(mariadb, database, "UPDATE blocker")
    try:
        with pytest.raises(MigrationError):
            migrator_for(mariadb, database, location, statement_retries=0).migrate()
    finally:
        killer.join()
        holder.rollback()
        holder.close()
    [(state, done, in_flight)] = query(
        mariadb, database, "SELECT state, statements_done, in_flight FROM schema_history"
    )
    assert (state, in_flight) == ("in_progress", "transaction")
    committed = query(mariadb, database, "SELECT COUNT(*) FROM t")[0][0]
    assert 1 + committed == done  # the CREATE and every committed INSERT, none in doubt
    assert [r.state for r in migrator_for(mariadb, database, location).info()] == ["failed"]
    with pytest.raises(MigrationError, match="nothing to mark done"):
        migrator_for(mariadb, database, location).repair("mark-done")
    result = migrator_for(mariadb, database, location).migrate()
    assert result.applied == ["V1__long.sql"]
    assert query(mariadb, database, "SELECT x FROM t ORDER BY x") == [
        (n,) for n in (1, 2, 3, 4, 5, 7)
    ]
    assert query(mariadb, database, "SELECT x FROM blocker") == [(1,)]
    assert history(mariadb, database) == [("V1__long.sql", "success", 1, 8)]


def test_a_failure_inside_a_transaction_is_recorded_as_the_client_leaves_it(
    mariadb: MariaDBServer, tmp_path: Path
) -> None:
    files = {
        "V1__t.sql": "CREATE TABLE t (x INT PRIMARY KEY);\nSET @a = 1;\n",
        "V2__ok.sql": "INSERT INTO t VALUES (1);\n",
        "V3__dup.sql": (
            "INSERT INTO t VALUES (2);\nINSERT INTO t VALUES (1);\nINSERT INTO t VALUES (3);\n"
        ),
    }
    location = write_migrations(tmp_path, files)
    engine_db = mariadb.create_database()
    with pytest.raises(StatementFailed) as caught:
        migrator_for(mariadb, engine_db, location).migrate()
    assert (caught.value.script, caught.value.statement_number, caught.value.error_code) == (
        "V3__dup.sql",
        2,
        1062,
    )
    assert [r[:2] + r[3:] for r in history(mariadb, engine_db)] == [
        ("V1__t.sql", "success", 2),
        ("V2__ok.sql", "success", 1),
        ("V3__dup.sql", "failed", 1),
    ]
    client_db = mariadb.create_database()
    write_migrations(tmp_path / "client", {k: v for k, v in files.items()})
    apply_with_client_until_failure(mariadb, client_db, tmp_path / "client")
    assert schema_snapshot(mariadb, engine_db) == schema_snapshot(mariadb, client_db)


def apply_with_client_until_failure(server: MariaDBServer, database: str, location: Path) -> None:
    from migrator_support import ordered_scripts, run_client

    for script in ordered_scripts(location):
        if run_client(server, database, script, check=False).returncode != 0:
            return


@pytest.mark.parametrize(
    "setup",
    [
        "CREATE TABLE t (x INT PRIMARY KEY) ENGINE=Aria",  # does not roll back
        "CREATE TABLE t (x INT PRIMARY KEY) ENGINE=InnoDB;\nCREATE TABLE log (x INT) "
        "ENGINE=Aria;\nCREATE TRIGGER t_log AFTER INSERT ON t FOR EACH ROW "
        "INSERT INTO log VALUES (NEW.x)",  # a trigger may write what does not
    ],
    ids=["aria_table", "trigger"],
)
def test_writes_that_may_not_roll_back_are_never_in_a_transaction(
    mariadb: MariaDBServer,
    database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: str,
) -> None:
    files = {"V1__t.sql": setup + ";\nSET @a = 1;\n"}
    files |= {f"V{n}__row.sql": f"INSERT INTO t VALUES ({n});\n" for n in range(2, 6)}
    location = write_migrations(tmp_path, files)
    sent = _sent(monkeypatch)
    migrator_for(mariadb, database, location).migrate()
    assert not [p for p in sent if "START TRANSACTION" in p]
    assert query(mariadb, database, "SELECT COUNT(*) FROM t") == [(4,)]
