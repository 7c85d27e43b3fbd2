"""The scale rows of bench_migrations.py (issue 11): the engine and the `mariadb` client on
the same large inputs, side by side in paired rounds on one server.

- a ~50 MB `mariadb-dump` (default options: extended INSERTs, LOCK TABLES, BLOBs as raw
  bytes) of a database generated here: time and peak memory (RSS) of each process;
- one file of 200,000 one-row INSERTs: time (and peak memory);
- 5,000 small files (a table, then one INSERT each): the engine in-process (what the Pulumi
  provider runs) against the client reading all files in one session;
- the no-op run over those 5,000 files through the CLI.

The client and the CLI run as processes; their peak RSS comes from wait4(2).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migrator.connection import ConnectionSettings  # noqa: E402
from migrator.discovery import load_migrations  # noqa: E402
from migrator.engine import Migrator  # noqa: E402
from standins.mariadb import MariaDBServer  # noqa: E402

CLIENT = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
DUMP = shutil.which("mariadb-dump") or shutil.which("mysqldump") or "mariadb-dump"


@dataclass
class Measured:
    seconds: float
    peak_kb: int = 0  # peak RSS of the process (0: in-process, not measured)


@dataclass
class Row:
    label: str
    target_ratio: float | None  # time vs client must be at most this (None: shown only)
    memory_ratio: float | None = None  # peak RSS vs client at most this
    client: list[Measured] = field(default_factory=list)
    engine: list[Measured] = field(default_factory=list)


def _env(server: MariaDBServer, database: str | None = None) -> dict[str, str]:
    env = dict(os.environ, MYSQL_PWD=server.admin_password)
    # Python caches compiled modules, as on any machine that runs the CLI twice; a sandbox
    # with PYTHONDONTWRITEBYTECODE=1 would recompile the engine on every run (~0.1 s).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if database is not None:
        env["APPDB_MIGRATE_DSN"] = server.dsn(database)
    return env


# GNU time reports its child's peak RSS. (wait4 from this process cannot: a child forked
# from it starts with this interpreter's memory counted, before it execs.)
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def _process(argv: list[str], env: dict[str, str], stdin: Path | None = None) -> Measured:
    """Run a process to its end: wall time and its own peak RSS."""
    handle = stdin.open("rb") if stdin is not None else subprocess.DEVNULL
    report = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-rss-{os.getpid()}"
    wrapped = [GNU_TIME, "-f", "%M", "-o", str(report), *argv] if GNU_TIME else argv
    started = time.perf_counter()
    try:
        result = subprocess.run(wrapped, stdin=handle, stdout=subprocess.DEVNULL, env=env)
    finally:
        if stdin is not None:
            handle.close()  # type: ignore[union-attr]
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{argv[0]} exited with {result.returncode}")
    peak = int(report.read_text().split()[-1]) if GNU_TIME else 0
    report.unlink(missing_ok=True)
    return Measured(seconds, peak)


def client_file(server: MariaDBServer, database: str, script: Path) -> Measured:
    argv = [
        CLIENT,
        *server.client_args(),
        "--ssl-verify-server-cert",
        "--default-character-set=utf8mb4",
        database,
    ]
    return _process(argv, _env(server), stdin=script)


def engine_cli(server: MariaDBServer, database: str, location: Path) -> Measured:
    argv = [
        sys.executable,
        str(ROOT / "scripts" / "migrate"),
        "migrate",
        "--locations",
        str(location),
        "--ca-bundle",
        str(server.ca_path),
    ]
    return _process(argv, _env(server, database))


def engine_inprocess(server: MariaDBServer, database: str, location: Path) -> Measured:
    settings = ConnectionSettings(
        host=server.host,
        port=server.port,
        user=server.admin_user,
        password=server.admin_password,
        database=database,
        ca_bundle=str(server.ca_path),
    )
    started = time.perf_counter()
    Migrator(settings, load_migrations(location)).migrate()
    return Measured(time.perf_counter() - started)


def _sql(server: MariaDBServer, sql: str, database: str | None = None) -> None:
    conn = server.root_connection(database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def make_dump(server: MariaDBServer, target: Path, megabytes: int) -> int:
    """A database of about `megabytes` MB of dump (utf8mb4 text, JSON, raw binary), dumped
    with mariadb-dump's default options; returns the file's size."""
    source = server.create_database("dumpsrc")
    customers = 2400 * megabytes
    orders = 3000 * megabytes
    for sql in (
        "CREATE TABLE customers (id INT PRIMARY KEY, email VARCHAR(120) NOT NULL, "
        "name VARCHAR(100), notes TEXT, avatar BLOB, created DATETIME, KEY idx_email (email)) "
        "DEFAULT CHARSET=utf8mb4",
        "CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT NOT NULL, total DECIMAL(10,2), "
        "status ENUM('new','paid','shipped'), payload JSON, token BINARY(16), "
        "KEY idx_customer (customer_id))",
        "INSERT INTO customers SELECT seq, CONCAT('user', seq, '@example.com'), "
        "CONCAT('Name ', seq, ' Ünïcødé'), REPEAT(CONCAT('note ', seq, ' it''s; -- /* '), 8), "
        "UNHEX(CONCAT(MD5(seq), MD5(seq + 1), MD5(seq + 2))), "
        f"'2024-01-01' + INTERVAL seq MINUTE FROM seq_1_to_{customers}",
        f"INSERT INTO orders SELECT seq, seq MOD {customers} + 1, seq / 7, "
        "ELT(seq MOD 3 + 1, 'new', 'paid', 'shipped'), JSON_OBJECT('n', seq), UNHEX(MD5(seq)) "
        f"FROM seq_1_to_{orders}",
    ):
        _sql(server, sql, source)
    target.mkdir(parents=True, exist_ok=True)
    with (target / "V1__dump.sql").open("wb") as out:
        subprocess.run(
            [DUMP, *server.client_args(), source], stdout=out, check=True, env=_env(server)
        )
    _sql(server, f"DROP DATABASE `{source}`")
    return (target / "V1__dump.sql").stat().st_size


def make_inserts(target: Path, count: int) -> int:
    target.mkdir(parents=True, exist_ok=True)
    path = target / "V1__rows.sql"
    with path.open("w") as out:
        out.write("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(50), v INT);\n")
        for n in range(count):
            out.write(f"INSERT INTO t VALUES ({n}, 'row {n}', {n % 97});\n")
    return path.stat().st_size


def make_small_files(target: Path, count: int) -> Path:
    """`count` migrations (a table, then one INSERT each), and the same as one script."""
    target.mkdir(parents=True, exist_ok=True)
    texts = ["CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(50));\n"]
    texts += [f"INSERT INTO t VALUES ({n}, 'row {n}');\n" for n in range(2, count + 1)]
    for n, text in enumerate(texts, start=1):
        (target / f"V{n}__step_{n}.sql").write_text(text)
    together = target.parent / f"{target.name}-all.sql"
    together.write_text("".join(texts))
    return together


def paired(
    server: MariaDBServer,
    row: Row,
    rounds: int,
    client: Callable[[str], Measured],
    engine: Callable[[str], Measured],
    say: Callable[[str], None],
) -> None:
    """`rounds` rounds, the client and the engine back to back in each (alternating who goes
    first), each into a fresh database that is dropped after."""
    for number in range(rounds):
        order = [("client", client), ("engine", engine)]
        if number % 2:
            order.reverse()
        for who, run in order:
            database = server.create_database("scale")
            measured = run(database)
            (row.client if who == "client" else row.engine).append(measured)
            _sql(server, f"DROP DATABASE `{database}`")
            say(f"{row.label}: round {number + 1}/{rounds}, {who} {measured.seconds:.2f} s")


def ratio(row: Row) -> float:
    return statistics.median(
        e.seconds / c.seconds for e, c in zip(row.engine, row.client, strict=True)
    )


def memory_ratio(row: Row) -> float:
    client = max(c.peak_kb for c in row.client)
    return max(e.peak_kb for e in row.engine) / client if client else float("nan")


def run_scale(
    server: MariaDBServer,
    work: Path,
    rounds: int,
    dump_mb: int,
    inserts: int,
    files: int,
    say: Callable[[str], None],
) -> tuple[list[Row], dict[str, float]]:
    rows: list[Row] = []
    extra: dict[str, float] = {}

    dump_dir = work / "dump"
    size = make_dump(server, dump_dir, dump_mb)
    extra["dump MB"] = size / 1e6
    dump_row = Row(f"{size / 1e6:.0f} MB mariadb-dump, CLI", 1.5, 4.0)
    paired(
        server,
        dump_row,
        rounds,
        lambda db: client_file(server, db, dump_dir / "V1__dump.sql"),
        lambda db: engine_cli(server, db, dump_dir),
        say,
    )
    rows.append(dump_row)

    inserts_dir = work / "inserts"
    make_inserts(inserts_dir, inserts)
    insert_row = Row(f"{inserts:,} one-row INSERTs in one file, CLI", 1.5, 4.0)
    paired(
        server,
        insert_row,
        rounds,
        lambda db: client_file(server, db, inserts_dir / "V1__rows.sql"),
        lambda db: engine_cli(server, db, inserts_dir),
        say,
    )
    rows.append(insert_row)

    files_dir = work / "files"
    together = make_small_files(files_dir, files)
    files_row = Row(f"{files:,} small files, in-process", 1.5)
    paired(
        server,
        files_row,
        max(rounds, 5),
        lambda db: client_file(server, db, together),
        lambda db: engine_inprocess(server, db, files_dir),
        say,
    )
    rows.append(files_row)
    files_cli = Row(f"{files:,} small files, CLI", None)
    paired(
        server,
        files_cli,
        max(rounds, 5) // 2 + 1,
        lambda db: client_file(server, db, together),
        lambda db: engine_cli(server, db, files_dir),
        say,
    )
    rows.append(files_cli)

    applied = server.create_database("noop")
    engine_inprocess(server, applied, files_dir)
    noops = [engine_cli(server, applied, files_dir) for _ in range(3)]
    extra["no-op CLI s"] = min(m.seconds for m in noops)
    extra["no-op CLI peak KB"] = min(m.peak_kb for m in noops)
    extra["no-op in-process s"] = min(
        engine_inprocess(server, applied, files_dir).seconds for _ in range(3)
    )
    return rows, extra


def report(rows: list[Row], extra: dict[str, float]) -> list[tuple[str, bool, str, str]]:
    """Prints the scale table; returns the checks (name, passed, figure, other)."""
    print()
    print(
        f"{'scale (issue 11), paired rounds':<44} {'client s':>9} {'engine s':>9} "
        f"{'vs client':>10} {'client MB':>10} {'engine MB':>10} {'vs client':>10}"
    )
    print("-" * 106)
    checks: list[tuple[str, bool, str, str]] = []
    for row in rows:
        client_s = statistics.median(m.seconds for m in row.client)
        engine_s = statistics.median(m.seconds for m in row.engine)
        r = ratio(row)
        memory = ""
        if row.memory_ratio is not None:
            c_mb = max(m.peak_kb for m in row.client) / 1024
            e_mb = max(m.peak_kb for m in row.engine) / 1024
            memory = f"{c_mb:>10.1f} {e_mb:>10.1f} {memory_ratio(row):>9.2f}x"
        print(f"{row.label:<44} {client_s:>9.2f} {engine_s:>9.2f} {r:>9.2f}x {memory}")
        per_round = " ".join(
            f"{e.seconds / c.seconds:.2f}" for e, c in zip(row.engine, row.client, strict=True)
        )
        print(f"{'  (engine / client, round by round)':<44} {per_round}")
        if row.target_ratio is not None:
            checks.append(
                (
                    f"{row.label}: within {row.target_ratio}x of the client",
                    r <= row.target_ratio,
                    f"{r:.2f}x",
                    "",
                )
            )
        if row.memory_ratio is not None:
            checks.append(
                (
                    f"{row.label}: peak memory within {row.memory_ratio}x",
                    memory_ratio(row) <= row.memory_ratio,
                    f"{memory_ratio(row):.2f}x",
                    "",
                )
            )
    noop = extra["no-op CLI s"]
    print(f"{'no-op over the files, CLI (best of 3)':<44} {'':>9} {noop:>9.3f}")
    print(
        f"{'no-op over the files, in-process (best of 3)':<44} {'':>9} "
        f"{extra['no-op in-process s']:>9.3f}"
    )
    checks.append(
        (
            "no-op over the files < 0.5 s through the CLI",
            noop < 0.5,
            f"{noop:.3f} s",
            f"in-process {extra['no-op in-process s']:.3f} s",
        )
    )
    return checks
