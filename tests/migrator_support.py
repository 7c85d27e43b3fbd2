"""Helpers for the migrator tests (not fixtures: plain functions, imported explicitly)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
