"""Scale without timed assertions: what must not grow with the size of a migration does not.

The large figures (500k statements, a 50 MB dump, 5,000 files) are in
benchmarks/bench_migrations.py; here modest counts show the property (history row size,
largest history write, memory held) stays flat as the count grows four-fold."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pymysql
import pytest
from migrator_support import (
    history,
    migrator_for,
    one_row,
    pymysql_execute_command,
    query,
    write_migrations,
)

from standins.mariadb import MariaDBServer


def _inserts(count: int) -> str:
    return "CREATE TABLE t (id INT PRIMARY KEY);\n" + "".join(
        f"INSERT INTO t VALUES ({n});\n" for n in range(count)
    )


def _history_writes(
    server: MariaDBServer, database: str, location: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The history writes of one run, as sent (one string per write)."""
    sent: list[bytes] = []
    original = pymysql_execute_command()

    def recording(self: pymysql.connections.Connection, command: int, sql: object) -> object:
        if command == 3:  # COM_QUERY
            sent.append(sql if isinstance(sql, bytes) else str(sql).encode())
        return original(self, command, sql)

    with monkeypatch.context() as patch:
        patch.setattr(pymysql.connections.Connection, "_execute_command", recording)
        migrator_for(server, database, location).migrate()
    writes = []
    for packet in sent:
        for part in packet.decode("utf-8", "surrogateescape").split(";"):
            if "schema_history" in part and not part.lstrip().upper().startswith("SELECT"):
                writes.append(part)
    return writes


def test_history_row_and_history_writes_do_not_grow_with_the_statement_count(
    mariadb: MariaDBServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = {}
    for count in (2_000, 8_000):
        database = mariadb.create_database("scale")
        location = write_migrations(tmp_path / str(count), {"V1__rows.sql": _inserts(count)})
        writes = _history_writes(mariadb, database, location, monkeypatch)
        [(row_bytes,)] = query(
            mariadb,
            database,
            "SELECT LENGTH(statement_checksums) + LENGTH(COALESCE(error, '')) "
            "+ LENGTH(checksum) FROM schema_history",
        )
        assert history(mariadb, database) == [("V1__rows.sql", "success", 1, count + 1)]
        figures[count] = (row_bytes, max(len(w) for w in writes))
    # Neither the stored row nor the largest single write depends on the count.
    assert figures[2_000] == figures[8_000], figures


def test_a_migration_larger_than_max_allowed_packet_in_history_terms_applies(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    # With a 1 MiB max_allowed_packet, 40,000 statements are far more than one packet of
    # history could carry (a checksum each) and than one packet of statements plus their
    # progress writes; the engine sizes its packets to the server.
    root = mariadb.root_connection()
    with root.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.max_allowed_packet")
        (original,) = one_row(cur)
        cur.execute("SET GLOBAL max_allowed_packet = 1048576")
    try:
        location = write_migrations(tmp_path, {"V1__many.sql": _inserts(40_000)})
        assert migrator_for(mariadb, database, location).migrate().applied == ["V1__many.sql"]
    finally:
        with root.cursor() as cur:
            cur.execute("SET GLOBAL max_allowed_packet = %s", (original,))
        root.close()
    assert query(mariadb, database, "SELECT COUNT(*) FROM t") == [(40_000,)]
    assert history(mariadb, database) == [("V1__many.sql", "success", 1, 40_001)]


def _dump_like(size: int) -> str:
    """Extended INSERTs of about 20 kB each, `size` characters in all."""
    row = "({n}, 'some text that a dump would carry, with a quote '' and a ; in it')"
    statement = "INSERT INTO t VALUES " + ",".join(row.format(n="{n}") for _ in range(250))
    parts = ["CREATE TABLE t (id INT, s VARCHAR(100));\n"]
    total, n = 0, 0
    while total < size:
        text = statement.replace("{n}", str(n)) + ";\n"
        parts.append(text)
        total += len(text)
        n += 1
    return "".join(parts)


def test_memory_held_does_not_grow_with_the_file(mariadb: MariaDBServer, tmp_path: Path) -> None:
    peaks = {}
    for megabytes in (2, 8):
        database = mariadb.create_database("memory")
        location = write_migrations(
            tmp_path / str(megabytes), {"V1__dump.sql": _dump_like(megabytes << 20)}
        )
        migrator = migrator_for(mariadb, database, location)
        tracemalloc.start()
        try:
            migrator.migrate()
            peaks[megabytes] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # Four times the file, about the same peak: the file is streamed, not held.
    assert peaks[8] - peaks[2] < 1 << 20, peaks
