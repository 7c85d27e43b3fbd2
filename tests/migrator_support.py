"""Helpers for the migrator tests (not fixtures: plain functions, imported explicitly)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import pymysql

from migrator.connection import ConnectionSettings
from migrator.discovery import load_migrations
from migrator.engine import MigrationOptions, Migrator
from standins.mariadb import MariaDBServer

ROOT = Path(__file__).resolve().parent.parent


def settings_for(server: MariaDBServer, database: str, **overrides: object) -> ConnectionSettings:
    fields: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "user": server.admin_user,
        "password": server.admin_password,
        "database": database,
        "ca_bundle": str(server.ca_path),
        "connect_deadline": 5.0,
    }
    fields.update(overrides)
    return ConnectionSettings(**fields)  # type: ignore[arg-type]


def write_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`scripts/migrate <args>` in a subprocess (environment inherited unless `env` is given)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "migrate"), *args],
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def migrator_for(
    server: MariaDBServer, database: str, location: Path, **options: object
) -> Migrator:
    return Migrator(
        settings_for(server, database),
        load_migrations(location),
        MigrationOptions(**options),  # type: ignore[arg-type]
    )


Row = TypeVar("Row", covariant=True)


class FetchesRows(Protocol[Row]):
    def fetchone(self) -> Row | None: ...


def one_row(cursor: FetchesRows[Row]) -> Row:
    """The next row of the cursor's result, which must have one: a dict from a DictCursor,
    a tuple from a Cursor."""
    row = cursor.fetchone()
    assert row is not None, "the query returned no row"
    return row


ExecuteCommand = Callable[[pymysql.connections.Connection, int, object], object]


def pymysql_execute_command() -> ExecuteCommand:
    """pymysql's Connection._execute_command, which sends every command packet (the tests
    record packets by patching it). Private, so pymysql's type stubs do not declare it."""
    return vars(pymysql.connections.Connection)["_execute_command"]


def query(server: MariaDBServer, database: str, sql: str, args: object = None) -> list[tuple]:
    conn = server.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def history(server: MariaDBServer, database: str) -> list[tuple]:
    """(script, state, success, statements_done) per history row, in rank order."""
    return query(
        server,
        database,
        "SELECT script, state, success, statements_done FROM schema_history "
        "ORDER BY installed_rank",
    )


def tables(server: MariaDBServer, database: str) -> set[str]:
    return {
        r[0]
        for r in query(
            server,
            database,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (database,),
        )
    }


# -- the `mariadb` client as the peer, and what both leave behind ------------------------------

CLIENT = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
DUMP = shutil.which("mariadb-dump") or shutil.which("mysqldump") or "mariadb-dump"


def run_client(
    server: MariaDBServer,
    database: str,
    script: Path,
    *,
    charset: str = "utf8mb4",
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """`mariadb <database> < script` in its own session (as an operator applies a file), run
    from `cwd` (default: the script's folder, so `source` finds what the engine finds)."""
    with script.open("rb") as stdin:
        result = subprocess.run(
            [
                CLIENT,
                *server.client_args(),
                "--ssl-verify-server-cert",
                f"--default-character-set={charset}",
                database,
            ],
            stdin=stdin,
            capture_output=True,
            cwd=cwd or script.parent,
            env=dict(os.environ, MYSQL_PWD=server.admin_password),
            timeout=120,
        )
    if check and result.returncode != 0:
        raise AssertionError(f"mariadb client failed on {script.name}: {result.stderr!r}")
    return result


def ordered_scripts(location: Path) -> list[Path]:
    """The migration files of a folder in the engine's order (versioned, then repeatable),
    without reading them: the client's side of a comparison."""
    from migrator.discovery import parse_name, version_key

    named = [(parse_name(p.name), p) for p in location.iterdir() if p.suffix == ".sql"]
    versioned = sorted(
        ((version_key(n[1]), p) for n, p in named if n and n[1] is not None), key=lambda x: x[0]
    )
    repeatable = sorted(p for n, p in named if n and n[1] is None)
    return [p for _, p in versioned] + repeatable


def apply_with_client(
    server: MariaDBServer, database: str, location: Path, *, charset: str = "utf8mb4"
) -> None:
    """Every migration file with the client, each in a session of its own, from the folder."""
    for script in ordered_scripts(location):
        run_client(server, database, script, charset=charset, cwd=location)


def dump(server: MariaDBServer, database: str, *options: str) -> bytes:
    """`mariadb-dump` of `database` with `options` (the file a project would ship)."""
    return subprocess.run(
        [DUMP, *server.client_args(), *options, database],
        capture_output=True,
        check=True,
        env=dict(os.environ, MYSQL_PWD=server.admin_password),
        timeout=120,
    ).stdout


def schema_snapshot(server: MariaDBServer, database: str) -> dict[str, object]:
    """What a database holds, comparable across databases: tables, columns, indexes, foreign
    keys, routines, triggers, views (definitions with the database name replaced), row counts
    and CHECKSUM TABLE of every base table. `schema_history` is left out."""

    def rows(sql: str) -> list[tuple]:
        found = query(server, database, sql, (database,))
        return [
            tuple(v.replace(database, "<db>") if isinstance(v, str) else v for v in row)
            for row in found
        ]

    skip = f"'{'schema_history'}'"
    snapshot: dict[str, object] = {
        "tables": rows(
            "SELECT table_name, table_type, engine, table_collation, table_comment "
            f"FROM information_schema.tables WHERE table_schema = %s AND table_name <> {skip} "
            "ORDER BY table_name"
        ),
        "columns": rows(
            "SELECT table_name, column_name, ordinal_position, column_type, is_nullable, "
            "column_default, extra, character_set_name, collation_name, generation_expression "
            f"FROM information_schema.columns WHERE table_schema = %s AND table_name <> {skip} "
            "ORDER BY table_name, ordinal_position"
        ),
        "indexes": rows(
            "SELECT table_name, index_name, seq_in_index, column_name, non_unique, index_type "
            f"FROM information_schema.statistics WHERE table_schema = %s "
            f"AND table_name <> {skip} ORDER BY table_name, index_name, seq_in_index"
        ),
        "foreign_keys": rows(
            "SELECT constraint_name, table_name, referenced_table_name, update_rule, delete_rule "
            "FROM information_schema.referential_constraints WHERE constraint_schema = %s "
            "ORDER BY constraint_name"
        ),
        "routines": rows(
            "SELECT routine_name, routine_type, routine_definition, is_deterministic, "
            "sql_data_access, security_type, sql_mode, character_set_client, "
            "collation_connection FROM information_schema.routines WHERE routine_schema = %s "
            "ORDER BY routine_name"
        ),
        "triggers": rows(
            "SELECT trigger_name, event_manipulation, event_object_table, action_statement, "
            "action_timing, sql_mode, character_set_client, collation_connection "
            "FROM information_schema.triggers WHERE trigger_schema = %s ORDER BY trigger_name"
        ),
        "views": rows(
            "SELECT table_name, view_definition, check_option, security_type, "
            "character_set_client, collation_connection FROM information_schema.views "
            "WHERE table_schema = %s ORDER BY table_name"
        ),
    }
    base_tables = [t[0] for t in snapshot["tables"] if t[1] == "BASE TABLE"]  # type: ignore[index, union-attr]
    counts, checksums = {}, {}
    for table in base_tables:
        name = f"`{database}`.`{table}`"
        counts[table] = query(server, database, f"SELECT COUNT(*) FROM {name}")[0][0]
        checksums[table] = query(server, database, f"CHECKSUM TABLE {name}")[0][1]
    snapshot["row_counts"] = counts
    snapshot["checksums"] = checksums
    return snapshot
