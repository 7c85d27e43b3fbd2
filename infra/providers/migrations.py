"""The `SchemaMigrations` dynamic resource: applies `schema/` with the engine in `migrator`.

A thin adapter from Pulumi's resource lifecycle to `migrator`:

- `check`/`diff` run during `pulumi preview` and touch nothing outside this process: `diff`
  compares the migration map in the inputs (script -> checksum, computed from the files by the
  program) with the set applied last time (the outputs). Pulumi shows the input map's diff, so
  `pulumi preview --diff` lists exactly the pending and changed scripts.
- `create`/`update` run the migrations where the stack's runner is (`runner`: the in-VPC
  Lambda function, invoked again until done; or, without one, this process), through the same
  task (vpcrunner.tasks): it verifies the files against the planned checksums, reads the master
  secret from Secrets Manager *when it runs* (never from inputs or state), connects with
  verified TLS and migrates. If authentication fails once, the secret is read again and the
  run retried once (credentials may rotate between read and connect). The pre-migration RDS
  snapshot (a public AWS API, no database) is taken here, in the provider, when the task says
  something is pending.
- `read` (`pulumi refresh`) reads the history table, so hand-made changes show up as drift.
- `delete` never drops anything: the schema and its data stay.

Pulumi pickles the provider object with dill into the state (`__provider`). The provider keeps
no attributes at all - clients, connections and secrets are created inside each method - and its
class lives in this importable module, so it is pickled by reference: Pulumi's provider host,
started from the project directory, imports `infra.providers.migrations` to unpickle it. This
module therefore must not declare resources or do any work at import time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pulumi
from pulumi import dynamic

from infra.providers.inputs import changed_keys, check_failures, parsed, project_path
from migrator.errors import MigrationError
from migrator.snapshot import SnapshotSettings, create_pre_migration_snapshot
from vpcrunner.invoke import Runner, RunnerError, run_task
from vpcrunner.requests import MigrationRequest
from vpcrunner.tasks import highest_version

__all__ = ["SchemaMigrations", "SchemaMigrationsError", "SchemaMigrationsProvider", "compare"]

T = TypeVar("T")

# Inputs, in the order they are documented (MigrationRequest's fields), and the optional ones
# with their defaults. Every input is echoed into the outputs, because Pulumi's default update
# would otherwise drop them and `diff` compares against the outputs.
INPUT_KEYS = tuple(f.name for f in dataclasses.fields(MigrationRequest))
OPTIONAL_INPUTS: dict[str, Any] = {
    f.name: f.default
    for f in dataclasses.fields(MigrationRequest)
    if f.default is not dataclasses.MISSING
}
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
    """Compare the new inputs with the old state (`applied` is the set applied last time).

    Works on the raw mappings, not on a parsed request: during preview any input may still be
    unknown, and the state may come from an older version of this provider."""
    wanted = news.get("migrations")
    applied = olds.get("applied") or {}
    if not isinstance(wanted, Mapping):  # unknown during preview: assume everything may change
        return MigrationDiff(settings=["migrations"])
    pending = [script for script in wanted if script not in applied]
    changed = [s for s in wanted if s in applied and applied[s] != wanted[s]]
    missing = [script for script in applied if script not in wanted]
    settings = changed_keys(
        olds, news, (key for key in INPUT_KEYS if key != "migrations"), OPTIONAL_INPUTS
    )
    return MigrationDiff(pending, changed, missing, settings)


class SchemaMigrationsProvider(dynamic.ResourceProvider):
    """Dynamic provider over `migrator`. Holds no state: see the module docstring.

    Each method parses its inputs once into a `MigrationRequest`; everything behind the edge
    takes that object."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        failures = [
            dynamic.CheckFailure(
                key, "no password may be an input: it is read from the secret at apply time"
            )
            for key in news
            if "password" in key.lower()
        ]
        failures += check_failures(MigrationRequest.problems(news))
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
        return dynamic.CheckResult({**OPTIONAL_INPUTS, **news}, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # No database connection here: this runs during preview. Never a replacement: the
        # "resource" is the schema's migration state, and it only ever moves forward.
        found = compare(olds, news)
        return dynamic.DiffResult(changes=found.has_changes, replaces=[], stables=[])

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        request = parsed(MigrationRequest, props, SchemaMigrationsError)
        outs = _readable_errors(request, lambda: _migrate(request))
        return dynamic.CreateResult(id_=f"{request.database}@{request.host}", outs=outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        request = parsed(MigrationRequest, news, SchemaMigrationsError)
        return dynamic.UpdateResult(outs=_readable_errors(request, lambda: _migrate(request)))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        request = parsed(MigrationRequest, props, SchemaMigrationsError)

        def applied_now() -> dict[str, str]:
            answer = _run(request, "migrations.read")
            return dict(answer["result"]["applied"])

        applied = _readable_errors(request, applied_now)
        echoed = request.as_inputs()
        outs = {**echoed, "applied": applied, "applied_version": highest_version(applied)}
        # The refreshed inputs record the migration map as the database has it, so the next
        # `pulumi preview --diff` displays the drifted scripts in the `migrations` property
        # (Pulumi displays input changes; `diff` alone could only say "something changed").
        inputs = {**echoed, "migrations": applied}
        return dynamic.ReadResult(id_, outs, inputs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # Dropping a schema is never a side effect of `pulumi destroy` or of removing this
        # resource from the program. The provider host has no engine connection, so this line
        # goes to the provider's stderr, which the CLI shows as a message of no resource.
        pulumi.log.info(
            f"schema migrations: leaving database {props.get('database')!r} on "
            f"{props.get('host')} untouched (its tables, data and history table are kept)"
        )


def _report(line: str) -> None:
    # The provider host has no engine connection: pulumi.log writes to its stderr, which the
    # engine reads line by line and shows in the `pulumi up` output (for the dynamic provider
    # plugins it does not hide provider output: isDynamicPluginBinary in
    # https://github.com/pulumi/pulumi/blob/master/sdk/go/common/resource/plugin/plugin.go;
    # pulumi/pulumi#6065 tracks connecting the host to the engine).
    pulumi.log.info(line)


def _run(
    request: MigrationRequest, task: str, options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return run_task(
        Runner(request.runner, request.region),
        task,
        request.as_inputs(),
        deadline_seconds=request.runner_deadline_seconds,
        report=_report,
        options=options,
        label="schema migrations",
    )


def _snapshot(request: MigrationRequest, target_version: str | None) -> str:
    """The pre-migration snapshot, from here: RDS's public API, no database connection."""
    if not request.instance_identifier:
        raise SchemaMigrationsError(
            "snapshot_before_migrate is on but instance_identifier is empty: "
            "name the RDS instance to snapshot"
        )
    settings = SnapshotSettings(
        instance_identifier=request.instance_identifier,
        region=request.region,
        retention=request.snapshot_retention,
    )
    _report(f"schema migrations: snapshot of {request.instance_identifier} before migrating")
    snapshot_id = create_pre_migration_snapshot(settings, target_version)
    _report(f"schema migrations: snapshot {snapshot_id} is available")
    return snapshot_id


def _migrate(request: MigrationRequest) -> dict[str, Any]:
    if request.snapshot_before_migrate and not request.instance_identifier:
        _snapshot(request, None)  # refuses, before anything runs
    answer = _run(request, "migrate")
    if answer["status"] == "snapshot_needed":
        _snapshot(request, answer.get("target_version"))
        answer = _run(request, "migrate", {"snapshot_taken": True})
    result = answer["result"]
    return {
        **request.as_inputs(),
        "applied": result["applied"],
        "applied_version": result["applied_version"],
    }


def _readable_errors(request: MigrationRequest, action: Callable[[], T]) -> T:
    """Turn engine errors into one secret-free line naming the target (no chained traceback)."""
    try:
        return action()
    except (MigrationError, RunnerError, SchemaMigrationsError) as error:
        raise SchemaMigrationsError(
            f"schema migrations for {request.target} failed: {error}"
        ) from None


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
