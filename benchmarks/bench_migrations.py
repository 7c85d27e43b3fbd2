#!/usr/bin/env python3
"""Migration benchmark: this engine vs the plain `mariadb` client vs yoyo-migrations.

Generates 300 migrations x 3 statements (CREATE TABLE, ALTER TABLE, INSERT), starts one
throwaway MariaDB (standins.mariadb, TLS verified everywhere) and applies the same files,
each tool into its own fresh database (dropped after the run, so every run meets the same
server), side by side in one run:

  - plain `mariadb` client, all files concatenated into one session (the floor: no history,
    no lock, no bookkeeping)
  - yoyo-migrations (a Python peer), through its API, in-process, once
  - this engine through its CLI (`scripts/migrate migrate`, a fresh process like an operator's
    run) and in-process (`Migrator.migrate()`)
  - a no-op run (everything applied), CLI and in-process
  - the dynamic provider's `diff` over 1,000 migration files (no database connection)
  - the client and the engine again through latency_proxy.py, a simulated network

Rounds are paired: each round runs every tool back to back, in an order that rotates, and
"vs client" is the median over rounds of (time / the client's time in that round), so a slow
spell on a shared machine hits both sides of a ratio. The targets are checked on the
in-process engine (what the Pulumi dynamic provider runs); the CLI row adds a fresh
interpreter's start-up. Prints PASS/FAIL per target; exit status 1 if any fails.

Run: .venv/bin/python benchmarks/bench_migrations.py [--rounds 15] [--rtt-ms 0.5]
     [--server-dir /dev/shm]
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pymysql  # noqa: E402
from pymysql.constants import CLIENT as CLIENT_FLAGS  # noqa: E402

from migrator.connection import ConnectionSettings  # noqa: E402
from migrator.discovery import load_migrations  # noqa: E402
from migrator.engine import Migrator  # noqa: E402
from migrator.history import CREATE_TABLE, TABLE  # noqa: E402
from standins.mariadb import MariaDBServer  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from latency_proxy import LatencyProxy  # noqa: E402
from scale import report, run_scale  # noqa: E402

Runner = Callable[[MariaDBServer, str, Path], None]

CLIENT = "mariadb client, one session (floor)"
YOYO = "yoyo-migrations (in-process)"
ENGINE = "* this engine: Migrator.migrate() (in-process)"
ENGINE_CLI = "this engine: scripts/migrate (CLI, new process)"
REPLAY = "  its packets, sent by bare pymysql (no engine work)"
REPLAY_PER_MIGRATION = "  the same, history per migration only (no progress)"
REPLAY_BARE = "  the same without any history write"
REPLAYS = (REPLAY, REPLAY_PER_MIGRATION, REPLAY_BARE)
# The per-statement progress writes: `SET statements_done=k WHERE` (the success write sets
# more columns, so it does not match).
_PROGRESS_WRITE = re.compile(r"SET statements_done=\d+ WHERE")


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


def drop_database(server: MariaDBServer, database: str) -> None:
    conn = server.root_connection()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE `{database}`")
    conn.close()


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


def run_plain_client(
    server: MariaDBServer, database: str, files: Path, port: int | None = None
) -> None:
    script = "".join(
        (files / f"V{n}__bench_{n}.sql").read_text() for n in range(1, len(os.listdir(files)) + 1)
    )
    client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
    subprocess.run(
        [
            client,
            "--no-defaults",
            f"--host={server.host}",
            f"--port={port or server.port}",
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


def engine_settings(
    server: MariaDBServer, database: str, port: int | None = None
) -> ConnectionSettings:
    return ConnectionSettings(
        host=server.host,
        port=port or server.port,
        user=server.admin_user,
        password=server.admin_password,
        database=database,
        ca_bundle=str(server.ca_path),
    )


def run_engine_inprocess(
    server: MariaDBServer, database: str, files: Path, port: int | None = None
) -> None:
    Migrator(engine_settings(server, database, port), load_migrations(files)).migrate()


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
        env=cli_env(server, database),
    )


def cli_env(server: MariaDBServer, database: str) -> dict[str, str]:
    """The CLI's environment. Python caches compiled modules, as on any machine that runs
    the CLI twice; PYTHONDONTWRITEBYTECODE=1 (set in some sandboxes) would recompile the
    engine on every run (~0.1 s), so it is dropped."""
    env = dict(os.environ, APPDB_MIGRATE_DSN=server.dsn(database))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def record_engine_packets(server: MariaDBServer, files: Path) -> list[str]:
    """Every packet the engine sends to apply `files`, with the database name as {db}: what
    it asks of the server, replayed below without the engine around it."""
    database = server.create_database("record")
    sent: list[str] = []
    execute = pymysql.connections.Connection._execute_command  # type: ignore[attr-defined]

    def recording(conn: pymysql.connections.Connection, command: int, sql: str | bytes) -> None:
        if command == 3:  # COM_QUERY
            sent.append(sql.decode() if isinstance(sql, bytes) else sql)
        execute(conn, command, sql)

    pymysql.connections.Connection._execute_command = recording  # type: ignore[method-assign]
    try:
        run_engine_inprocess(server, database, files)
    finally:
        pymysql.connections.Connection._execute_command = execute  # type: ignore[method-assign]
    drop_database(server, database)
    return [p.replace(f"`{database}`", "`{db}`") for p in sent if "bench_" in p]


def replayer(packets: list[str], history: str) -> Runner:
    """Send the engine's packets over a plain pymysql connection (TLS verified like every
    tool), with `history` "all" of their history writes, "per-migration" (the start and
    success writes, not the per-statement progress), or "none". The benchmark's SQL has no
    ';' inside strings, so splitting its packets on ';' is exact."""

    def kept(part: str) -> bool:
        if history == "none":
            return TABLE not in part
        if history == "per-migration":
            return not _PROGRESS_WRITE.search(part)
        return True

    packets = [";".join(filter(kept, packet.split(";"))) for packet in packets]

    def replay(server: MariaDBServer, database: str, files: Path) -> None:
        conn = server.connect(database, client_flag=CLIENT_FLAGS.MULTI_STATEMENTS)
        with conn.cursor() as cur:
            if history != "none":
                cur.execute(CREATE_TABLE.format(table=TABLE))
            for packet in packets:
                cur.execute(packet.replace("`{db}`", f"`{database}`"))
                while cur.nextset():
                    pass
        conn.close()

    return replay


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


def run_rounds(
    server: MariaDBServer,
    runners: list[tuple[str, Runner, Path]],
    rounds: int,
    expected: int,
    once: Collection[str] = (),
) -> dict[str, list[float]]:
    """Seconds per runner per round. The order rotates each round so no tool always runs
    first (or right after yoyo); runners in `once` run in the first round only."""
    times: dict[str, list[float]] = {label: [] for label, _, _ in runners}
    for round_number in range(rounds):
        shift = round_number % len(runners)
        for label, runner, location in runners[shift:] + runners[:shift]:
            if label in once and times[label]:
                continue
            database = server.create_database("bench")
            seconds = timed(lambda r=runner, d=database, loc=location: r(server, d, loc))
            if count_tables(server, database) != expected:
                raise SystemExit(f"{label}: did not create {expected} tables")
            times[label].append(seconds)
            drop_database(server, database)  # every run starts from the same server state
        say(f"round {round_number + 1}/{rounds} done")
    return times


def say(message: str) -> None:
    """Progress of a long run, on stderr (the results go to stdout)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def paired_ratio(times: dict[str, list[float]], label: str, floor: str) -> float:
    """Median over rounds of (label's time / the floor's time in the same round): both ran
    within seconds of each other, so a slow spell on the shared machine hits both."""
    return statistics.median(a / b for a, b in zip(times[label], times[floor], strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--migrations", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=15, help="paired rounds (yoyo runs once)")
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=0.5,
        help="round-trip time of the simulated network section (0 skips it)",
    )
    parser.add_argument(
        "--server-dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where the throwaway server keeps its data (default /dev/shm: keeps other "
        "processes' disk flushes on a shared machine out of the figures; same for every tool)",
    )
    parser.add_argument(
        "--only",
        choices=("all", "classic", "scale"),
        default="all",
        help="classic: the 300 x 3 rows; scale: issue 11's rows (dump, INSERTs, 5,000 files)",
    )
    parser.add_argument(
        "--scale-rounds", type=int, default=3, help="paired rounds of each scale row"
    )
    parser.add_argument("--dump-mb", type=int, default=50)
    parser.add_argument("--inserts", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()
    if args.only == "scale":
        return scale_only(args)
    work = Path(tempfile.mkdtemp(prefix="bench-migrations-"))
    files, yoyo_files = work / "engine", work / "yoyo"
    generate(files, args.migrations, yoyo_files)
    expected = args.migrations
    load_before = _loadavg()
    print(
        f"{args.migrations} migrations x 3 statements; {args.rounds} paired round(s); "
        f"server data in {args.server_dir or tempfile.gettempdir()}"
    )
    base_dir = Path(tempfile.mkdtemp(prefix="bench-mariadb-", dir=args.server_dir))
    network: dict[str, list[float]] = {}
    scale_rows: list = []
    scale_extra: dict[str, float] = {}
    with MariaDBServer(base_dir=base_dir) as server:
        if args.only == "all":
            scale_rows, scale_extra = run_scale(
                server,
                work / "scale",
                args.scale_rounds,
                args.dump_mb,
                args.inserts,
                args.files,
                say,
            )
        packets = record_engine_packets(server, files)
        times = run_rounds(
            server,
            [
                (CLIENT, run_plain_client, files),
                (ENGINE, run_engine_inprocess, files),
                (REPLAY, replayer(packets, "all"), files),
                (REPLAY_PER_MIGRATION, replayer(packets, "per-migration"), files),
                (REPLAY_BARE, replayer(packets, "none"), files),
                (ENGINE_CLI, run_engine_cli, files),
                (YOYO, run_yoyo, yoyo_files),
            ],
            args.rounds,
            expected,
            once={YOYO},
        )
        engine_db = server.create_database("bench")
        run_engine_inprocess(server, engine_db, files)
        noop_cli = min(timed(lambda: run_engine_cli(server, engine_db, files)) for _ in range(3))
        noop_inproc = min(
            timed(lambda: run_engine_inprocess(server, engine_db, files)) for _ in range(3)
        )
        if args.rtt_ms > 0:
            with LatencyProxy(server.host, server.port, args.rtt_ms / 2000) as proxy:
                network = run_rounds(
                    server,
                    [
                        (CLIENT, functools.partial(run_plain_client, port=proxy.port), files),
                        (ENGINE, functools.partial(run_engine_inprocess, port=proxy.port), files),
                    ],
                    max(1, args.rounds // 2),
                    expected,
                )
    diff = provider_diff_seconds(work / "diff1000")
    shutil.rmtree(work, ignore_errors=True)

    best = {label: min(seconds) for label, seconds in times.items()}
    floor, yoyo = best[CLIENT], best[YOYO]
    # yoyo ran once: its row is shown against the client's best instead.
    vs_client = {label: paired_ratio(times, label, CLIENT) for label in times if label != YOYO}
    vs_client[YOYO] = yoyo / floor
    ratio, ratio_cli = vs_client[ENGINE], vs_client[ENGINE_CLI]
    print()
    print(f"{'run':<52} {'best s':>8} {'median s':>9} {'vs client':>10} {'yoyo / this':>12}")
    print("-" * 95)
    for label in (CLIENT, YOYO, ENGINE_CLI, ENGINE, *REPLAYS):
        vs_yoyo = f"{yoyo / best[label]:>11.1f}x" if label in (ENGINE, ENGINE_CLI) else ""
        median = statistics.median(times[label])
        print(
            f"{label:<52} {best[label]:>8.3f} {median:>9.3f} {vs_client[label]:>9.2f}x "
            f"{vs_yoyo:>12}"
        )
    print(f"{'no-op run, all applied: CLI':<52} {noop_cli:>8.3f}")
    print(f"{'no-op run, all applied: in-process':<52} {noop_inproc:>8.3f}")
    if diff is None:
        print("provider diff over 1,000 files: infra/providers/migrations.py not present")
    else:
        print(f"{'provider diff over 1,000 files (median)':<52} {diff[0]:>8.5f}")
        print(f"{'  (building the 1,000-file checksum map)':<52} {diff[1]:>8.3f}")
    print("where the engine's time goes, in multiples of the client's time:")
    bare, per_migration, full = (
        vs_client[label] for label in (REPLAY_BARE, REPLAY_PER_MIGRATION, REPLAY)
    )
    for name, share in (
        ("the migrations' own statements, batched", bare),
        ("+ history: start and success per migration", per_migration - bare),
        ("+ history: progress before each statement", full - per_migration),
        ("+ the engine's own work (files, checks, TLS, lock)", ratio - full),
    ):
        print(f"  {name:<50} {'':>8} {'':>9} {share:>+9.2f}x")
    rounds = " ".join(f"{e / c:.2f}" for e, c in zip(times[ENGINE], times[CLIENT], strict=True))
    print(f"{'  (engine / client, round by round)':<52} {rounds}")
    print(
        "'vs client' is the median over rounds of (time / the client's time in the same round);"
        "\nyoyo's row, which ran once, is its time over the client's best."
    )
    if network:
        print()
        print(f"over a simulated network, {args.rtt_ms} ms round trip (latency_proxy.py):")
        for label in (CLIENT, ENGINE):
            shown = paired_ratio(network, label, CLIENT)
            median = statistics.median(network[label])
            print(f"{label:<52} {min(network[label]):>8.3f} {median:>9.3f} {shown:>9.2f}x")
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
            ratio <= 1.5,
            f"{ratio:.2f}x",
            f"CLI {ratio_cli:.2f}x",
        ),
        (
            "engine >= 5x faster than yoyo",
            yoyo / best[ENGINE] >= 5,
            f"{yoyo / best[ENGINE]:.1f}x",
            f"CLI {yoyo / best[ENGINE_CLI]:.1f}x",
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
    if scale_rows:
        checks += report(scale_rows, scale_extra)
        print(f"load average at the end: {_loadavg()}")
    for name, passed, figure, other in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {name:<68} {figure:>10}   {other}")
    return 0 if all(passed for _, passed, _, _ in checks) else 1


def scale_only(args: argparse.Namespace) -> int:
    """Issue 11's rows alone (`--only scale`)."""
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    base_dir = Path(tempfile.mkdtemp(prefix="bench-mariadb-", dir=args.server_dir))
    load_before = _loadavg()
    with MariaDBServer(base_dir=base_dir) as server:
        rows, extra = run_scale(
            server, work, args.scale_rounds, args.dump_mb, args.inserts, args.files, say
        )
    shutil.rmtree(work, ignore_errors=True)
    checks = report(rows, extra)
    print(f"load average before / after: {load_before} / {_loadavg()}")
    print()
    for name, passed, figure, other in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {name:<68} {figure:>10}   {other}")
    return 0 if all(passed for _, passed, _, _ in checks) else 1


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


if __name__ == "__main__":
    sys.exit(main())
