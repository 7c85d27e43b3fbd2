#!/usr/bin/env python3
"""Migration benchmark: this engine vs the plain `mariadb` client vs yoyo-migrations.

Generates 300 migrations x 3 statements (CREATE TABLE, ALTER TABLE, INSERT), starts one
throwaway MariaDB (standins.mariadb, TLS verified everywhere) and applies the same files,
each tool into its own fresh database, side by side in one run:

  - plain `mariadb` client, all files concatenated into one session (the floor: no history,
    no lock, no bookkeeping)
  - yoyo-migrations (a Python peer), through its API, in-process
  - this engine through its CLI (`scripts/migrate migrate`, a fresh process like an operator's
    run) and in-process (`Migrator.migrate()`)
  - a no-op run (everything applied), CLI and in-process
  - the dynamic provider's `diff` over 1,000 migration files (no database connection)

The targets are checked on the in-process engine (what the Pulumi dynamic provider runs); the
CLI row adds a fresh interpreter's start-up. Prints PASS/FAIL per target; exit status 1 if
any fails.

Run: .venv/bin/python benchmarks/bench_migrations.py [--migrations 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migrator.connection import ConnectionSettings  # noqa: E402
from migrator.discovery import load_migrations  # noqa: E402
from migrator.engine import Migrator  # noqa: E402
from standins.mariadb import MariaDBServer  # noqa: E402

CLIENT = "mariadb client, one session (floor)"
YOYO = "yoyo-migrations (in-process)"
ENGINE = "* this engine: Migrator.migrate() (in-process)"
ENGINE_CLI = "this engine: scripts/migrate (CLI, new process)"


def migration_text(n: int) -> str:
    return (
        f"CREATE TABLE bench_{n} (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL);\n"
        f"ALTER TABLE bench_{n} ADD COLUMN created_at TIMESTAMP NULL;\n"
        f"INSERT INTO bench_{n} (id, name) VALUES (1, 'row {n}');\n"
    )


def generate(directory: Path, count: int, yoyo_directory: Path | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for n in range(1, count + 1):
        (directory / f"V{n}__bench_{n}.sql").write_text(migration_text(n))
        if yoyo_directory is not None:
            yoyo_directory.mkdir(parents=True, exist_ok=True)
            # yoyo orders by file name: zero-pad so 10 sorts after 9.
            (yoyo_directory / f"{n:05d}_bench_{n}.sql").write_text(migration_text(n))


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def count_tables(server: MariaDBServer, database: str) -> int:
    conn = server.root_connection()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name LIKE 'bench%%'",
            (database,),
        )
        row = cur.fetchone()
    conn.close()
    return int(row[0]) if row else 0


def run_plain_client(server: MariaDBServer, database: str, files: Path) -> None:
    script = "".join(
        (files / f"V{n}__bench_{n}.sql").read_text() for n in range(1, len(os.listdir(files)) + 1)
    )
    client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
    subprocess.run(
        [
            client,
            "--no-defaults",
            f"--host={server.host}",
            f"--port={server.port}",
            f"--user={server.admin_user}",
            f"--ssl-ca={server.ca_path}",
            "--ssl-verify-server-cert",
            database,
        ],
        input=script,
        text=True,
        check=True,
        env=dict(os.environ, MYSQL_PWD=server.admin_password),
    )


def run_yoyo(server: MariaDBServer, database: str, files: Path) -> None:
    from yoyo import get_backend, read_migrations

    url = (
        f"mysql://{server.admin_user}:{server.admin_password}@{server.host}:{server.port}/"
        f"{database}?ssl_ca={server.ca_path}"
    )
    backend = get_backend(url)
    migrations = read_migrations(str(files))
    with backend.lock():
        backend.apply_migrations(backend.to_apply(migrations))


def engine_settings(server: MariaDBServer, database: str) -> ConnectionSettings:
    return ConnectionSettings(
        host=server.host,
        port=server.port,
        user=server.admin_user,
        password=server.admin_password,
        database=database,
        ca_bundle=str(server.ca_path),
    )


def run_engine_inprocess(server: MariaDBServer, database: str, files: Path) -> None:
    Migrator(engine_settings(server, database), load_migrations(files)).migrate()


def run_engine_cli(server: MariaDBServer, database: str, files: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "migrate"),
            "migrate",
            "--locations",
            str(files),
            "--ca-bundle",
            str(server.ca_path),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        env=dict(os.environ, APPDB_MIGRATE_DSN=server.dsn(database)),
    )


def provider_diff_seconds(directory: Path, repeat: int = 20) -> tuple[float, float] | None:
    """(median diff seconds, checksum-map build seconds) over 1,000 files, or None."""
    if not (ROOT / "infra" / "providers" / "migrations.py").exists():
        return None
    from infra.providers.migrations import SchemaMigrationsProvider

    generate(directory, 1000)
    started = time.perf_counter()
    checksums = load_migrations(directory).checksums()
    build = time.perf_counter() - started
    applied = dict(checksums)
    applied.pop(f"V1000__bench_{1000}.sql")  # one pending
    inputs = {
        "secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:appdb-x",
        "host": "db.example",
        "port": 3306,
        "database": "appdb",
        "region": "us-east-1",
    }
    olds = {**inputs, "migrations": applied, "applied": applied}
    news = {**inputs, "migrations": checksums}
    provider = SchemaMigrationsProvider()
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = provider.diff("appdb@db.example", olds, news)
        times.append(time.perf_counter() - started)
    assert result is not None and result.changes, "diff should see the pending migration"
    return statistics.median(times), build


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--migrations", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="repeat and keep the best time")
    parser.add_argument(
        "--server-dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where the throwaway server keeps its data (default /dev/shm: keeps other "
        "processes' disk flushes on a shared machine out of the figures; same for every tool)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-migrations-"))
    files, yoyo_files = work / "engine", work / "yoyo"
    generate(files, args.migrations, yoyo_files)
    results: dict[str, float] = {}
    expected = args.migrations
    load_before = _loadavg()
    print(
        f"{args.migrations} migrations x 3 statements; best of {args.rounds} round(s); "
        f"server data in {args.server_dir or tempfile.gettempdir()}"
    )
    base_dir = Path(tempfile.mkdtemp(prefix="bench-mariadb-", dir=args.server_dir))
    with MariaDBServer(base_dir=base_dir) as server:
        runners: list[tuple[str, Callable[[MariaDBServer, str, Path], None], Path]] = [
            (CLIENT, run_plain_client, files),
            (YOYO, run_yoyo, yoyo_files),
            (ENGINE_CLI, run_engine_cli, files),
            (ENGINE, run_engine_inprocess, files),
        ]
        engine_db = ""
        for _ in range(args.rounds):
            for label, runner, location in runners:
                database = server.create_database("bench")
                seconds = timed(lambda r=runner, d=database, loc=location: r(server, d, loc))
                if count_tables(server, database) != expected:
                    raise SystemExit(f"{label}: did not create {expected} tables")
                results[label] = min(results.get(label, float("inf")), seconds)
                engine_db = database if runner is run_engine_inprocess else engine_db
        noop_cli = min(timed(lambda: run_engine_cli(server, engine_db, files)) for _ in range(3))
        noop_inproc = min(
            timed(lambda: run_engine_inprocess(server, engine_db, files)) for _ in range(3)
        )
    diff = provider_diff_seconds(work / "diff1000")
    shutil.rmtree(work, ignore_errors=True)

    floor = results[CLIENT]
    yoyo = results[YOYO]
    engine = results[ENGINE]
    engine_cli = results[ENGINE_CLI]
    print()
    print(f"{'run':<52} {'seconds':>9} {'vs client':>10} {'yoyo / this':>12}")
    print("-" * 86)
    for label, seconds in results.items():
        vs_yoyo = f"{yoyo / seconds:>11.1f}x" if label in (ENGINE, ENGINE_CLI) else ""
        print(f"{label:<52} {seconds:>9.3f} {seconds / floor:>9.2f}x {vs_yoyo:>12}")
    print(f"{'no-op run, all applied: CLI':<52} {noop_cli:>9.3f}")
    print(f"{'no-op run, all applied: in-process':<52} {noop_inproc:>9.3f}")
    if diff is None:
        print("provider diff over 1,000 files: infra/providers/migrations.py not present")
    else:
        print(f"{'provider diff over 1,000 files (median)':<52} {diff[0]:>9.5f}")
        print(f"{'  (building the 1,000-file checksum map)':<52} {diff[1]:>9.3f}")
    print(f"load average before / after: {load_before} / {_loadavg()}")
    print()
    print(
        "targets, checked on the in-process engine (* above: Migrator.migrate(), what the "
        "Pulumi\ndynamic provider runs); the CLI row adds a fresh Python's start-up and "
        "imports, shown for information:"
    )
    checks = [
        (
            "engine within 1.5x of the plain client",
            engine / floor <= 1.5,
            f"{engine / floor:.2f}x",
            f"CLI {engine_cli / floor:.2f}x",
        ),
        (
            "engine >= 5x faster than yoyo",
            yoyo / engine >= 5,
            f"{yoyo / engine:.1f}x",
            f"CLI {yoyo / engine_cli:.1f}x",
        ),
        (
            "no-op run < 0.3 s (checked through the CLI)",
            noop_cli < 0.3,
            f"{noop_cli:.3f} s",
            f"in-process {noop_inproc:.3f} s",
        ),
    ]
    if diff is not None:
        checks.append(("provider diff(1000) < 0.1 s", diff[0] < 0.1, f"{diff[0]:.5f} s", ""))
    for name, passed, figure, other in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {name:<44} {figure:>10}   {other}")
    return 0 if all(passed for _, passed, _, _ in checks) else 1


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


if __name__ == "__main__":
    sys.exit(main())
