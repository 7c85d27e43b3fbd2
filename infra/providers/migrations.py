"""The `SchemaMigrations` dynamic resource: applies `schema/` with the engine in `migrator`.

A thin adapter from Pulumi's resource lifecycle to `migrator`:

- `check`/`diff` run during `pulumi preview` and touch nothing outside this process: `diff`
  compares the migration map in the inputs (script -> checksum, computed from the files by the
  program) with the set applied last time (the outputs). Pulumi shows the input map's diff, so
  `pulumi preview --diff` lists exactly the pending and changed scripts.
- `create`/`update` read the master secret from Secrets Manager *when they run* (never from
  inputs or state), connect with verified TLS and migrate. If authentication fails once, the
  secret is read again and the run retried once (credentials may rotate between read and connect).
- `read` (`pulumi refresh`) reads the history table, so hand-made changes show up as drift.
- `delete` never drops anything: the schema and its data stay.

Pulumi pickles the provider object with dill into the state (`__provider`). The provider keeps
no attributes at all - clients, connections and secrets are created inside each method - and its
class lives in this importable module, so it is pickled by reference: Pulumi's provider host,
started from the project directory, imports `infra.providers.migrations` to unpickle it. This
module therefore must not declare resources or do any work at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pulumi
from pulumi import dynamic

from infra.providers.inputs import (
    UNKNOWN,
    ca_bundle_path,
    changed_keys,
    echoed_inputs,
    normalise,
    port_failures,
    project_path,
    required_string_failures,
)
from migrator import secrets as migrator_secrets
from migrator.connection import ConnectionSettings
from migrator.discovery import MigrationSet, load_migrations, parse_name, version_key
from migrator.engine import MigrationOptions, Migrator
from migrator.errors import AuthenticationFailed, MigrationError
from migrator.snapshot import SnapshotSettings

T = TypeVar("T")

# Inputs, in the order they are documented. Every input is echoed into the outputs, because
# Pulumi's default update would otherwise drop them and `diff` compares against the outputs.
REQUIRED_STRINGS = ("secret_arn", "region", "host", "database", "location")
OPTIONAL_INPUTS: dict[str, Any] = {
    "ca_bundle": None,  # PEM bundle path, relative to the project dir; None = system trust store
    "connect_deadline_seconds": 600,
    "out_of_order": False,
    "lock_wait_seconds": 60,
    "statement_lock_wait_seconds": 10,
    "snapshot_before_migrate": False,
    "snapshot_retention": 5,  # pre-migration snapshots kept (older ones the engine made go)
    "instance_identifier": None,  # RDS instance to snapshot before migrating
}
INPUT_KEYS = (*REQUIRED_STRINGS, "port", "migrations", *OPTIONAL_INPUTS)
RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


class SchemaMigrationsError(Exception):
    """The one readable, secret-free message `pulumi up` shows when migrating fails."""


@dataclass(frozen=True)
class MigrationDiff:
    """What `diff` found, per script. Computed from the inputs and the state alone."""

    pending: list[str] = field(default_factory=list)  # in the inputs, not applied yet
    changed: list[str] = field(default_factory=list)  # applied with another checksum
    missing: list[str] = field(default_factory=list)  # applied, but no longer in the inputs
    settings: list[str] = field(default_factory=list)  # other inputs that differ

    @property
    def has_changes(self) -> bool:
        return bool(self.pending or self.changed or self.missing or self.settings)

    def describe(self) -> str:
        if not self.has_changes:
            return "nothing to do: every migration is applied"
        parts = []
        for label, scripts in (
            ("pending", self.pending),
            ("changed", self.changed),
            ("missing", self.missing),
            ("settings changed", self.settings),
        ):
            if scripts:
                parts.append(f"{label}: {', '.join(scripts)}")
        return "; ".join(parts)


def compare(olds: Mapping[str, Any], news: Mapping[str, Any]) -> MigrationDiff:
    """Compare the new inputs with the old state (`applied` is the set applied last time)."""
    wanted = news.get("migrations")
    applied = olds.get("applied") or {}
    if not isinstance(wanted, Mapping):  # unknown during preview: assume everything may change
        return MigrationDiff(settings=["migrations"])
    pending = [script for script in wanted if script not in applied]
    changed = [s for s in wanted if s in applied and applied[s] != wanted[s]]
    missing = [script for script in applied if script not in wanted]
    settings = changed_keys(olds, news, (key for key in INPUT_KEYS if key != "migrations"))
    return MigrationDiff(pending, changed, missing, settings)


def highest_version(scripts: Mapping[str, str] | list[str]) -> str | None:
    """The highest version among versioned script names (numeric, part by part), or None."""
    versions = [
        parsed[1] for script in scripts if (parsed := parse_name(script)) and parsed[1] is not None
    ]
    return max(versions, key=version_key) if versions else None


class SchemaMigrationsProvider(dynamic.ResourceProvider):
    """Dynamic provider over `migrator`. Holds no state: see the module docstring."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        failures = []
        for key in news:
            if "password" in key.lower():
                failures.append(
                    dynamic.CheckFailure(
                        key, "no password may be an input: it is read from the secret at apply time"
                    )
                )
        failures += required_string_failures(news, REQUIRED_STRINGS)
        failures += port_failures(news)
        migrations = news.get("migrations")
        if migrations != UNKNOWN and not (
            isinstance(migrations, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in migrations.items())
        ):
            failures.append(
                dynamic.CheckFailure("migrations", "must map script name to checksum (strings)")
            )
        ca_bundle = news.get("ca_bundle")
        if isinstance(ca_bundle, str) and ca_bundle and not project_path(ca_bundle).is_file():
            # Caught at preview rather than when `up` first connects.
            failures.append(
                dynamic.CheckFailure(
                    "ca_bundle",
                    f"CA bundle {ca_bundle} not found (relative to the project directory); "
                    f"for RDS download {RDS_CA_BUNDLE_URL} to that path",
                )
            )
        inputs = {**OPTIONAL_INPUTS, **news}
        return dynamic.CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # No database connection here: this runs during preview. Never a replacement: the
        # "resource" is the schema's migration state, and it only ever moves forward.
        found = compare(olds, news)
        return dynamic.DiffResult(changes=found.has_changes, replaces=[], stables=[])

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        outs = _readable_errors(props, lambda: _migrate(props))
        return dynamic.CreateResult(id_=f"{props['database']}@{props['host']}", outs=outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=_readable_errors(news, lambda: _migrate(news)))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        def applied_now() -> dict[str, Any]:
            migrations = _load_migrations(props, verify=False)
            return _with_current_secret(
                props, lambda settings: Migrator(settings, migrations).applied_checksums()
            )

        applied = _readable_errors(props, applied_now)
        outs = {**_inputs(props), "applied": applied, "applied_version": highest_version(applied)}
        # The refreshed inputs record the migration map as the database has it, so the next
        # `pulumi preview --diff` displays the drifted scripts in the `migrations` property
        # (Pulumi displays input changes; `diff` alone could only say "something changed").
        inputs = {**_inputs(props), "migrations": applied}
        return dynamic.ReadResult(id_, outs, inputs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # Dropping a schema is never a side effect of `pulumi destroy` or of removing this
        # resource from the program. The provider host has no engine connection, so this line
        # goes to the provider's stderr rather than to the resource's log.
        pulumi.log.info(
            f"schema migrations: leaving database {props.get('database')!r} on "
            f"{props.get('host')} untouched (its tables, data and history table are kept)"
        )


def _inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    return echoed_inputs(props, INPUT_KEYS, OPTIONAL_INPUTS)


def _load_migrations(props: Mapping[str, Any], *, verify: bool) -> MigrationSet:
    migrations = load_migrations(project_path(str(props["location"])))
    if verify:
        on_disk = migrations.checksums()
        planned = dict(props.get("migrations") or {})
        differing = sorted(
            s for s in on_disk.keys() | planned.keys() if on_disk.get(s) != planned.get(s)
        )
        if differing:
            raise SchemaMigrationsError(
                f"the files in {props['location']}/ differ from the migration map this update "
                f"was planned with ({', '.join(differing)}); run `pulumi up` again to plan "
                "with the current files"
            )
    return migrations


def _options(props: Mapping[str, Any]) -> MigrationOptions:
    options = MigrationOptions(
        out_of_order=bool(props.get("out_of_order", False)),
        lock_wait_seconds=float(props.get("lock_wait_seconds") or 60),
        statement_lock_wait_seconds=int(props.get("statement_lock_wait_seconds") or 10),
    )
    if props.get("snapshot_before_migrate"):
        options.snapshot = _snapshot_settings(props)
    return options


def _snapshot_settings(props: Mapping[str, Any]) -> SnapshotSettings:
    identifier = props.get("instance_identifier")
    if not identifier:
        raise SchemaMigrationsError(
            "snapshot_before_migrate is on but instance_identifier is empty: "
            "name the RDS instance to snapshot"
        )
    return SnapshotSettings(
        instance_identifier=str(identifier),
        region=str(props["region"]),
        retention=int(props.get("snapshot_retention") or OPTIONAL_INPUTS["snapshot_retention"]),
    )


def _connection_settings(props: Mapping[str, Any], secret: Any) -> ConnectionSettings:
    return ConnectionSettings(
        host=str(props["host"]),
        port=int(props["port"]),
        user=secret.username,
        password=secret.password,
        database=str(props["database"]),
        ca_bundle=ca_bundle_path(props.get("ca_bundle")),
        connect_deadline=float(props.get("connect_deadline_seconds") or 600),
    )


def _fetch_secret(props: Mapping[str, Any]) -> Any:
    return migrator_secrets.fetch_database_secret(str(props["secret_arn"]), str(props["region"]))


def _with_current_secret(props: Mapping[str, Any], action: Callable[[ConnectionSettings], T]) -> T:
    """Run `action` with credentials read now; on an authentication failure read them again once.

    A rotation can promote a new password between our read of the secret and our connection;
    the second read picks it up. A second failure is final.
    """
    try:
        return action(_connection_settings(props, _fetch_secret(props)))
    except AuthenticationFailed:
        pass
    try:
        return action(_connection_settings(props, _fetch_secret(props)))
    except AuthenticationFailed as error:
        raise SchemaMigrationsError(
            f"{error} (the secret {props['secret_arn']} was read again and the retry was "
            "rejected too: check that the secret's AWSCURRENT value is the database's password)"
        ) from None


def _migrate(props: dict[str, Any]) -> dict[str, Any]:
    migrations = _load_migrations(props, verify=True)
    options = _options(props)

    def run(settings: ConnectionSettings) -> dict[str, Any]:
        # One connection and one history read: the run reports what history now holds.
        result = Migrator(settings, migrations, options).migrate()
        return {
            "applied": result.checksums,
            "applied_version": result.current_version or highest_version(result.checksums),
        }

    return {**_inputs(props), **_with_current_secret(props, run)}


def _readable_errors(props: Mapping[str, Any], action: Callable[[], T]) -> T:
    """Turn engine errors into one secret-free line naming the target (no chained traceback)."""
    try:
        return action()
    except (MigrationError, SchemaMigrationsError) as error:
        port = normalise(props.get("port"))
        target = f"database {props.get('database')!r} on {props.get('host')}:{port}"
        message = str(error)
        raise SchemaMigrationsError(f"schema migrations for {target} failed: {message}") from None


class SchemaMigrations(dynamic.Resource, module="appdb", name="SchemaMigrations"):
    """The database's schema brought to the version in `location`. See `SchemaMigrationsProvider`.

    Outputs: `applied` (script -> checksum of every applied migration) and `applied_version`
    (highest applied version), plus every input echoed back.
    """

    applied: pulumi.Output[dict[str, str]]
    applied_version: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        props: Mapping[str, Any],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            SchemaMigrationsProvider(),
            name,
            {**props, "applied": None, "applied_version": None},
            opts,
        )
