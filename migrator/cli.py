"""`scripts/migrate`: the operator CLI over the engine (info, validate, migrate, plan, repair)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from migrator.errors import ConfigurationError, MigrationError

if TYPE_CHECKING:
    from migrator.connection import ConnectionSettings
    from migrator.engine import Progress, Step

# The engine (and with it pymysql) is imported after the arguments are parsed (see
# _import_driver), and `--help` stays instant.

ROOT = Path(__file__).resolve().parent.parent
DSN_ENV = "APPDB_MIGRATE_DSN"
PASSWORD_ENV = "APPDB_MIGRATE_PASSWORD"
# `repair --<action>`: what each one tells the engine.
REPAIR_ACTIONS = {
    "retry": "the interrupted statement did NOT take effect: run it again next time",
    "mark-done": "the interrupted statement DID take effect: continue after it next time",
    "restart": "forget a failed/interrupted migration's progress (undo its effects first)",
    "realign-checksums": "accept changed files of applied migrations as the new truth",
}


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    target = common.add_argument_group("target database (one of)")
    target.add_argument(
        "--dsn",
        default=os.environ.get(DSN_ENV),
        help=f"mysql://user[:password]@host:port/database (or set ${DSN_ENV}, which keeps it "
        f"out of `ps`); without a password in it: ${PASSWORD_ENV} or --ask-password. The "
        "password is never printed",
    )
    target.add_argument(
        "--ask-password",
        action="store_true",
        help="read the password from the terminal (for a --dsn without one)",
    )
    target.add_argument("--secret-arn", help="Secrets Manager secret with the RDS secret JSON")
    target.add_argument("--region", help="AWS region of the secret / instance")
    target.add_argument("--database", help="database name (default: the DSN's or dbname)")
    common.add_argument(
        "--locations",
        default=str(ROOT / "schema"),
        help="folder of V<version>__<desc>.sql / R__<desc>.sql files (default: schema/)",
    )
    common.add_argument(
        "--default-character-set",
        default="utf8mb4",
        metavar="CHARSET",
        help="the session character set every migration starts with, as the mariadb client's "
        "option of that name: what the bytes of a file that sets none mean (default utf8mb4)",
    )
    tls = common.add_argument_group("TLS (verified by default)")
    tls.add_argument("--ca-bundle", help="PEM CA bundle to verify the server (RDS: its bundle)")
    tls.add_argument(
        "--insecure-no-tls",
        action="store_true",
        help="connect WITHOUT TLS (local servers without TLS only; prints a warning)",
    )
    common.add_argument("--connect-deadline", type=float, default=300.0, metavar="SECONDS")
    common.add_argument("--lock-wait", type=float, default=60.0, metavar="SECONDS")
    common.add_argument("--statement-lock-wait", type=int, default=10, metavar="SECONDS")
    common.add_argument("--out-of-order", action="store_true")
    common.add_argument(
        "--ignore-changed",
        action="store_true",
        help="report (do not fail on) applied migrations whose file changed or is missing",
    )
    common.add_argument(
        "--snapshot",
        action="store_true",
        help="take an RDS snapshot before applying anything (instance from the secret's "
        "dbInstanceIdentifier or --snapshot-instance)",
    )
    common.add_argument("--snapshot-instance", metavar="DB_INSTANCE_IDENTIFIER")
    common.add_argument("-v", "--verbose", action="store_true")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="scripts/migrate",
        description="Versioned MySQL schema migrations (see docs/migrations.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", parents=[common], help="applied/pending table")
    commands.add_parser("validate", parents=[common], help="check files against history")
    commands.add_parser("migrate", parents=[common], help="apply pending migrations")
    commands.add_parser("plan", parents=[common], help="pending statements, without running")
    repair = commands.add_parser(
        "repair", parents=[common], help="resolve an interrupted/failed migration in history"
    )
    action = repair.add_mutually_exclusive_group(required=True)
    for name, help_text in REPAIR_ACTIONS.items():
        action.add_argument(
            f"--{name}", dest="action", action="store_const", const=name, help=help_text
        )
    return parser


def _import_driver(tls: bool) -> None:
    """With TLS on, pymysql never needs `cryptography` (RSA password exchange happens only on
    a connection without TLS): importing pymysql without it saves ~30 ms and ~9 MB."""
    if tls and "cryptography" not in sys.modules:
        sys.modules["cryptography"] = None  # type: ignore[assignment]
        try:
            import pymysql  # noqa: F401
        finally:
            del sys.modules["cryptography"]


def _password(args: argparse.Namespace) -> str | None:
    """The password when the DSN has none: $APPDB_MIGRATE_PASSWORD, or typed at a prompt."""
    if args.ask_password:
        import getpass

        try:
            return getpass.getpass("password: ", stream=sys.stderr)
        except EOFError:
            raise ConfigurationError(
                ["--ask-password: no password was typed"], "no password"
            ) from None
    return os.environ.get(PASSWORD_ENV)


def _settings(args: argparse.Namespace) -> tuple[ConnectionSettings, str | None]:
    """Connection settings and the RDS instance identifier (if the secret names one)."""
    tls_options: dict[str, object] = {
        "ca_bundle": args.ca_bundle,
        "tls": not args.insecure_no_tls,
        "connect_deadline": args.connect_deadline,
    }
    if bool(args.dsn) == bool(args.secret_arn):
        raise ConfigurationError(
            [f"give exactly one of --dsn (or ${DSN_ENV}) and --secret-arn"], "no target database"
        )
    from migrator.connection import ConnectionSettings, dsn_has_password, parse_dsn

    if args.dsn:
        database = {"database": args.database} if args.database else {}
        settings = parse_dsn(args.dsn, **database, **tls_options)
        if not dsn_has_password(args.dsn):
            password = _password(args)
            if password is not None:
                settings = dataclasses.replace(settings, password=password)
        return settings, None
    from migrator.secrets import fetch_database_secret

    secret = fetch_database_secret(args.secret_arn, region=args.region)
    database = args.database or secret.dbname
    if not database:
        raise ConfigurationError(
            [f"secret {args.secret_arn} has no dbname: pass --database"], "no database name"
        )
    settings = ConnectionSettings(
        host=secret.host,
        port=secret.port,
        user=secret.username,
        password=secret.password,
        database=database,
        **tls_options,  # type: ignore[arg-type]
    )
    return settings, secret.dbInstanceIdentifier


def _width(text: str) -> int:
    """Columns `text` takes in a terminal (wide East Asian characters take two)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Columns that line up (wide characters counted as two), separated by two spaces."""
    widths = [max([_width(h), *(_width(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    print("  ".join(_pad(h, w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(_pad(c, w) for c, w in zip(row, widths, strict=True)).rstrip())


def _one_line(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_plan(steps: list[Step], target: str) -> None:
    """The statements `migrate` would run, numbered, each with where it comes from (and the
    client command it stands for). All plan output goes through here; what it shows has
    passwords masked, never what is run."""
    from migrator.masking import mask_passwords

    if not steps:
        print(f"{target}: nothing to apply")
    for step in steps:
        start = f" (resuming at statement {step.start + 1})" if step.start else ""
        print(f"-- {step.migration.script}{start}")
        for stmt in step.replay:
            print(f"-- (re-run first, for the session state it set up) {stmt.where}")
            print(mask_passwords(stmt.text) + ";")
        numbered = enumerate(step.iter_statements(), start=1)
        for number, stmt in numbered:
            if number <= step.start:
                continue
            command = f" (client command `{stmt.command}`)" if stmt.command else ""
            print(f"-- [{number}] {stmt.where}{command}")
            sql = mask_passwords(stmt.text)
            print(sql + ";" if "\n" not in sql else sql + "\n;")


class _ProgressPrinter:
    """Progress of a long run on stderr: a line every few seconds (a live line on a terminal)."""

    def __init__(self, every: float = 2.0):
        self.every = every
        self.started = time.monotonic()
        self.last = self.started
        self.live = sys.stderr.isatty()

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        line = (
            f"migrate: {progress.script}: statement {progress.done:,} of {progress.total:,}; "
            f"migration {progress.migration:,} of {progress.migrations:,} "
            f"({now - self.started:.0f}s)"
        )
        if self.live:
            print("\r" + line, end="\x1b[K", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live and self.last != self.started:
            print(file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.insecure_no_tls:
        print(
            "WARNING: --insecure-no-tls: the password and all data cross the network in clear "
            "text. Use only against a local server without TLS.",
            file=sys.stderr,
        )
    _import_driver(tls=not args.insecure_no_tls)
    from migrator.discovery import load_migrations
    from migrator.engine import MigrationOptions, Migrator
    from migrator.snapshot import SnapshotSettings

    migrations = load_migrations(args.locations)
    settings, instance = _settings(args)
    snapshot = None
    if args.snapshot or args.snapshot_instance:
        instance = args.snapshot_instance or instance
        if not instance:
            raise ConfigurationError(
                ["--snapshot needs --snapshot-instance (the secret names no instance)"],
                "no instance to snapshot",
            )
        snapshot = SnapshotSettings(instance_identifier=instance, region=args.region)
    printer = _ProgressPrinter()
    options = MigrationOptions(
        out_of_order=args.out_of_order,
        ignore_changed=args.ignore_changed,
        lock_wait_seconds=args.lock_wait,
        statement_lock_wait_seconds=args.statement_lock_wait,
        snapshot=snapshot,
        default_charset=args.default_character_set,
        progress=printer,
    )
    migrator = Migrator(settings, migrations, options)
    target = f"{settings.user}@{settings.address}/{settings.database}"

    if args.command == "info":
        rows = migrator.info()
        print_table(
            ["Version", "Description", "Script", "State", "Installed on", "ms"],
            [
                [
                    r.version or "R",
                    _one_line(r.description, 40),
                    r.script,
                    r.state + (f" ({_one_line(r.note)})" if r.note else ""),
                    (r.installed_on or "")[:19],
                    "" if r.execution_ms is None else str(r.execution_ms),
                ]
                for r in rows
            ],
        )
    elif args.command == "validate":
        migrator.validate()
        print(f"{target}: {len(migrations)} migration file(s) valid against history")
    elif args.command == "plan":
        print_plan(migrator.plan(), target)
    elif args.command == "migrate":
        try:
            result = migrator.migrate()
        finally:
            printer.close()
        if result.snapshot_id:
            print(f"snapshot {result.snapshot_id} taken before migrating")
        if result.applied:
            for script in result.applied:
                print(f"applied {script}")
            count = len(result.applied)
            print(f"{target}: {count} migration(s) applied; version {result.current_version}")
        else:
            print(f"{target}: up to date at version {result.current_version}")
    elif args.command == "repair":
        messages = migrator.repair(args.action)
        for message in messages or [f"{target}: nothing to repair ({args.action})"]:
            print(message)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="migrate: %(message)s",
        stream=sys.stderr,
    )
    try:
        return run(args)
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(
            f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""),
            file=sys.stderr,
        )
        return 1
    except Exception as exc:  # a bug: one line (the traceback with -v), never a secret
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"error: unexpected {type(exc).__name__} (run with -v for details)", file=sys.stderr)
        return 1
