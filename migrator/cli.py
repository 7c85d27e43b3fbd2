"""`scripts/migrate`: the operator CLI over the engine (info, validate, migrate, plan, repair)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from migrator.errors import ConfigurationError, MigrationError

if TYPE_CHECKING:
    from migrator.connection import ConnectionSettings

# The engine (and with it pymysql) is imported after the arguments are parsed: see
# _import_driver, and `--help` stays instant.

ROOT = Path(__file__).resolve().parent.parent
DSN_ENV = "APPDB_MIGRATE_DSN"
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
        help=f"mysql://user:password@host:port/database (or set ${DSN_ENV}; the password is "
        "never printed)",
    )
    target.add_argument("--secret-arn", help="Secrets Manager secret with the RDS secret JSON")
    target.add_argument("--region", help="AWS region of the secret / instance")
    target.add_argument("--database", help="database name (default: the DSN's or dbname)")
    common.add_argument(
        "--locations",
        default=str(ROOT / "schema"),
        help="folder of V<version>__<desc>.sql / R__<desc>.sql files (default: schema/)",
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
    from migrator.connection import ConnectionSettings, parse_dsn

    if args.dsn:
        database = {"database": args.database} if args.database else {}
        return parse_dsn(args.dsn, **database, **tls_options), None
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


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    line = "+".join("-" * (w + 2) for w in widths)
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print(line)
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def run(args: argparse.Namespace) -> int:
    if args.insecure_no_tls:
        print(
            "WARNING: --insecure-no-tls: the password and all data cross the network in clear "
            "text. Use only against a local server without TLS.",
            file=sys.stderr,
        )
    from migrator.discovery import load_migrations
    from migrator.engine import MigrationOptions, Migrator
    from migrator.masking import mask_passwords
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
    options = MigrationOptions(
        out_of_order=args.out_of_order,
        ignore_changed=args.ignore_changed,
        lock_wait_seconds=args.lock_wait,
        statement_lock_wait_seconds=args.statement_lock_wait,
        snapshot=snapshot,
    )
    migrator = Migrator(settings, migrations, options)
    target = f"{settings.user}@{settings.address}/{settings.database}"

    if args.command == "info":
        rows = migrator.info()
        _print_table(
            ["Version", "Description", "Script", "State", "Installed on", "ms"],
            [
                [
                    r.version or "R",
                    r.description,
                    r.script,
                    r.state + (f" ({r.note})" if r.note else ""),
                    r.installed_on or "",
                    "" if r.execution_ms is None else str(r.execution_ms),
                ]
                for r in rows
            ],
        )
    elif args.command == "validate":
        migrator.validate()
        print(f"{target}: {len(migrations)} migration file(s) valid against history")
    elif args.command == "plan":
        steps = migrator.plan()
        if not steps:
            print(f"{target}: nothing to apply")
        for step in steps:
            start = f" (resuming at statement {step.start + 1})" if step.start else ""
            print(f"-- {step.migration.script}{start}")
            for number, stmt in enumerate(step.statements[step.start :], start=step.start + 1):
                print(f"-- [{number}] line {stmt.line}")
                sql = mask_passwords(stmt.sql)  # what is shown, never what is run
                print(sql + ";" if "\n" not in sql else sql + "\n;")
    elif args.command == "migrate":
        result = migrator.migrate()
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
