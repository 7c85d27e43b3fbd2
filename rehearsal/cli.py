"""The local rehearsal of a deploy (`make rehearse`; the command `appdb-rehearse`).

1. the offline plan of both stacks (the real program under Pulumi's mock engine), as a summary
   per stack (`--full-plan` prints every resource too);
2. a local MariaDB (TLS, own CA) and moto's AWS server standing in for RDS and AWS;
3. the master secret the stack would create (standard RDS JSON, encrypted with a KMS key);
4. the schema migrations resource's `create`, exactly as `pulumi up` would run it;
5. the applied migrations, then a second run showing that nothing is left to do;
6. credential rotation with the providers in this process (the `direct` runner);
7. the `lambda` runner: the providers invoke the in-VPC function (its archive, on a local
   stand-in for the Lambda Invoke API), which migrates, rotates and flips the users.

Each step is a function taking the shared `Rehearsal`; STEPS lists them in order, and later
steps (credential rotation) are added to that list. Each step is announced as `[n/N]` when it
starts and timed when it ends. No password is ever printed: the output is checked for it before
the rehearsal reports success.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import boto3

from infra.providers.migrations import SchemaMigrationsProvider, compare
from planner import Plan, PlanError, StackConfigError, run_plan
from planner.cli import new_stack_flags
from planner.render import render_plan, render_summary
from standins.aws import aws_environment, moto_server
from standins.mariadb import MariaDBServer

ROOT = Path(__file__).resolve().parent.parent  # the checkout: schema/, the stack files

PROJECT = "appdb"
ENVIRONMENT = "rehearsal"
STACKS = ("staging", "production")


@dataclass
class Rehearsal:
    """What the steps share. Steps add to it as they go."""

    options: argparse.Namespace
    resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    mariadb: MariaDBServer | None = None
    aws_endpoint: str = ""
    region: str = "us-east-1"
    database: str = PROJECT
    kms_key_id: str = ""
    secret_arn: str = ""
    role_arns: dict[str, str] = field(default_factory=dict)  # app and readonly secrets
    props: dict[str, Any] = field(default_factory=dict)  # the migration resource's inputs
    outs: dict[str, Any] = field(default_factory=dict)  # its outputs after `create`
    resource_id: str = ""
    # Values that must never appear in the output (checked at the end).
    secrets: list[str] = field(default_factory=list)

    @property
    def server(self) -> MariaDBServer:
        assert self.mariadb is not None, "the stand-ins step has not run"
        return self.mariadb


# "[n/N] " while a step has not printed its first heading yet (see main).
_step_label = ""


def heading(title: str) -> None:
    global _step_label
    title, _step_label = _step_label + title, ""
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)))


def table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    line = "  ".join("{:<" + str(w) + "}" for w in widths)
    print("  " + line.format(*headers).rstrip())
    print("  " + line.format(*("-" * w for w in widths)).rstrip())
    for row in rows:
        print("  " + line.format(*row).rstrip())


# --- steps ----------------------------------------------------------------------------------


def show_plans(r: Rehearsal) -> None:
    """The offline plans of both stacks (the real program under Pulumi's mock engine)."""
    heading("Offline plans: staging and production (Pulumi mock engine)")

    def plan(stack: str) -> Plan:
        try:
            return run_plan(ROOT, stack)
        except (StackConfigError, PlanError) as exc:
            raise SystemExit(f"the plan of {stack} failed: {exc}") from None

    # Both plans side by side (each runs in its own process), printed in order.
    with ThreadPoolExecutor(max_workers=len(STACKS)) as pool:
        plans = dict(zip(STACKS, pool.map(plan, STACKS), strict=True))
    for planned in plans.values():
        print()
        print(indent(render_summary(planned, new_stack_flags(planned))))
    if r.options.full_plan:
        for stack, planned in plans.items():
            heading(f"Full plan: {stack} (`scripts/plan --stack {stack}`)")
            print(render_plan(planned).rstrip())
    else:
        print("\n  Every resource and property: scripts/plan --stack <stack>, or this rehearsal")
        print("  with --full-plan (make rehearse ARGS=--full-plan).")


def indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.rstrip().splitlines())


def start_standins(r: Rehearsal) -> None:
    """2. A local MariaDB with TLS standing in for RDS MySQL; moto standing in for AWS."""
    heading("Stand-ins")
    r.mariadb = r.resources.enter_context(MariaDBServer())
    r.secrets.append(r.server.admin_password)
    r.aws_endpoint = r.resources.enter_context(moto_server())
    r.resources.enter_context(aws_environment(r.aws_endpoint))
    # RDS creates the initial database named in the stack's config; do the same here.
    with r.server.root_connection() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{r.database}`")
    print(f"  MariaDB   {r.server.host}:{r.server.port}  TLS required, CA {r.server.ca_path.name}")
    print(f"  moto      {r.aws_endpoint}  (Secrets Manager, KMS, RDS)")


def create_master_secret(r: Rehearsal) -> None:
    """3. The master secret as the stack creates it: RDS JSON shape, encrypted with a CMK."""
    heading("Master secret (Secrets Manager, KMS-encrypted)")
    kms = boto3.client("kms", region_name=r.region)
    key = kms.create_key(Description=f"{PROJECT}-{ENVIRONMENT} RDS and secrets")["KeyMetadata"]
    r.kms_key_id = key["KeyId"]
    kms.create_alias(AliasName=f"alias/{PROJECT}-{ENVIRONMENT}-rds", TargetKeyId=r.kms_key_id)
    value = {
        "engine": "mysql",
        "host": r.server.host,
        "port": r.server.port,
        "username": r.server.admin_user,
        "password": r.server.admin_password,
        "dbname": r.database,
        "dbInstanceIdentifier": f"{PROJECT}-{ENVIRONMENT}",
    }
    secret = boto3.client("secretsmanager", region_name=r.region).create_secret(
        Name=f"{PROJECT}/{ENVIRONMENT}/master",
        KmsKeyId=f"alias/{PROJECT}-{ENVIRONMENT}-rds",
        SecretString=json.dumps(value),
    )
    r.secret_arn = secret["ARN"]
    shown = {k: ("********" if k == "password" else v) for k, v in value.items()}
    print(f"  {r.secret_arn}")
    print(f"  KMS key alias/{PROJECT}-{ENVIRONMENT}-rds; value: {json.dumps(shown)}")


def apply_migrations(r: Rehearsal) -> None:
    """4. The migration resource's create, as `pulumi up` runs it the first time."""
    heading("Schema migrations: create (as in the first `pulumi up`)")
    provider = SchemaMigrationsProvider()
    from migrator.discovery import load_migrations

    checked = provider.check(
        {},
        {
            "secret_arn": r.secret_arn,
            "region": r.region,
            "host": r.server.host,
            "port": r.server.port,
            "database": r.database,
            "location": "schema",
            "migrations": load_migrations(ROOT / "schema").checksums(),
            "ca_bundle": str(r.server.ca_path),  # RDS's global bundle in real use
            "connect_deadline_seconds": 30,
        },
    )
    if checked.failures:
        raise SystemExit("; ".join(f"{f.property}: {f.reason}" for f in checked.failures))
    r.props = checked.inputs
    started = time.perf_counter()
    result = provider.create(r.props)
    elapsed = time.perf_counter() - started
    r.resource_id, r.outs = result.id, dict(result.outs or {})
    print(
        f"  applied {len(r.outs['applied'])} migration(s) in {elapsed:.2f}s; "
        f"schema version {r.outs['applied_version']}"
    )
    show_history(r)


def show_history(r: Rehearsal) -> None:
    """5a. The applied migrations, as the history table records them."""
    heading(f"Applied migrations in `{r.database}`")
    from migrator.connection import ConnectionSettings
    from migrator.discovery import load_migrations
    from migrator.engine import Migrator

    settings = ConnectionSettings(
        host=r.server.host,
        port=r.server.port,
        user=r.server.admin_user,
        password=r.server.admin_password,
        database=r.database,
        ca_bundle=str(r.server.ca_path),
    )
    rows = Migrator(settings, load_migrations(ROOT / "schema")).info()
    applied = r.outs.get("applied", {})
    table(
        ["version", "script", "state", "installed on", "ms", "checksum"],
        [
            [
                row.version or "-",
                row.script,
                row.state,
                str(row.installed_on or ""),
                "" if row.execution_ms is None else str(row.execution_ms),
                applied.get(row.script, "")[:12],
            ]
            for row in rows
        ],
    )


def rerun_is_a_noop(r: Rehearsal) -> None:
    """5b. A second `pulumi up`: the diff finds nothing; the update, if forced, applies nothing."""
    heading("Second run (as in the next `pulumi up` with no new files)")
    provider = SchemaMigrationsProvider()
    diff = provider.diff(r.resource_id, r.outs, r.props)
    print(f"  diff: {compare(r.outs, r.props).describe()} (changes={diff.changes})")
    if diff.changes:
        raise SystemExit("the second run found changes: the migration resource is not idempotent")
    started = time.perf_counter()
    updated = provider.update(r.resource_id, r.outs, r.props)
    elapsed = time.perf_counter() - started
    assert updated.outs is not None
    same = updated.outs["applied"] == r.outs["applied"]
    print(
        f"  forced update (as if the diff had found something): {elapsed:.2f}s, "
        f"applied set {'unchanged' if same else 'CHANGED'}"
    )
    if not same:
        raise SystemExit("the no-op update changed the applied set")


def rotate_credentials(r: Rehearsal) -> None:
    """6. Credential rotation, as two `pulumi up`s: the first deploy, then a new rotation value.

    The dynamic providers run exactly as Pulumi runs them (here with the `direct` runner: in
    this process). New passwords are generated where the rotation runs and go straight to
    Secrets Manager. Only account names and version ids are printed.
    """
    from infra.providers.rotation import ApplicationUsersProvider, MasterPasswordRotationProvider
    from migrator.errors import AuthenticationFailed
    from rotation.database import connect_as, parse
    from rotation.grants import ROLE_PRIVILEGES
    from rotation.secret_store import CURRENT, PREVIOUS, SecretStore

    heading("Credential rotation (appdb:credentialsRotation: initial -> rehearsal-2)")
    client = boto3.client("secretsmanager", region_name=r.region)
    role_arns = {
        role: client.create_secret(  # created empty, as the stack creates them
            Name=f"{PROJECT}/{ENVIRONMENT}/rds/{role}",
            KmsKeyId=f"alias/{PROJECT}-{ENVIRONMENT}-rds",
        )["ARN"]
        for role in ROLE_PRIVILEGES
    }
    common = {
        "region": r.region,
        "ca_bundle": str(r.server.ca_path),
        "connect_deadline_seconds": 30,
    }

    def master_inputs(rotation: str) -> dict[str, Any]:
        props = {"secret_arn": r.secret_arn, "host": r.server.host, "port": r.server.port}
        props |= {"rotation": rotation, **common}
        return MasterPasswordRotationProvider().check({}, props).inputs

    def users_inputs(rotation: str) -> dict[str, Any]:
        roles = {
            role: {"secret_arn": arn, "host": r.server.host, "port": r.server.port}
            for role, arn in role_arns.items()
        }
        props = {"master_secret_arn": r.secret_arn, "schema": r.database, "rotation": rotation}
        props |= {"roles": roles, "privileges": {k: list(v) for k, v in ROLE_PRIVILEGES.items()}}
        return ApplicationUsersProvider().check({}, {**props, **common}).inputs

    store = SecretStore(r.region)
    arns = {"master": r.secret_arn, **role_arns}

    def snapshot() -> dict[str, tuple[str, str]]:
        found = {}
        for name, arn in arns.items():
            current = store.read(arn, CURRENT)
            assert current is not None
            found[name] = (str(current.value["username"]), current.version_id)
        return found

    # First `pulumi up`: the master secret already holds the instance's password (nothing to
    # rotate); the application accounts and their secrets are created.
    master, users = MasterPasswordRotationProvider(), ApplicationUsersProvider()
    master_outs = dict(master.create(master_inputs("initial")).outs or {})
    users_outs = dict(users.create(users_inputs("initial")).outs or {})
    before = snapshot()

    # `pulumi config set appdb:credentialsRotation rehearsal-2` && `pulumi up`
    next_master, next_users = master_inputs("rehearsal-2"), users_inputs("rehearsal-2")
    print(
        "  preview: master rotation changes="
        f"{master.diff('m', master_outs, next_master).changes}, application users changes="
        f"{users.diff('u', users_outs, next_users).changes}"
    )
    started = time.perf_counter()
    master_outs = dict(master.update("m", master_outs, next_master).outs or {})
    users_outs = dict(users.update("u", users_outs, next_users).outs or {})
    elapsed = time.perf_counter() - started
    after = snapshot()
    r.role_arns = role_arns
    r.server.admin_password = current_password(r.secret_arn, r.region)  # generated by the rotation
    r.secrets.append(r.server.admin_password)
    for arn in role_arns.values():
        for stage in (CURRENT, PREVIOUS):
            version = store.read(arn, stage)
            if version is not None:
                r.secrets.append(str(version.value["password"]))

    rows = []
    for name, arn in arns.items():
        previous = store.version_with(arn, PREVIOUS) or "-"
        rows.append([name, before[name][0], after[name][0], after[name][1][:8], previous[:8]])
    table(["secret", "active before", "active after", "AWSCURRENT", "AWSPREVIOUS"], rows)
    print(f"  rotated in {elapsed:.2f}s (staged, set over SQL, tested, promoted)")

    # The master's previous password is refused now; each role's previous account still works.
    def logs_in(arn: str, stage: str, database: str = "") -> tuple[str, bool]:
        version = store.read(arn, stage)
        assert version is not None
        credentials = parse(arn, version.value)
        try:
            connect_as(
                credentials, database=database, ca_bundle=str(r.server.ca_path), connect_deadline=5
            ).close()
            return credentials.username, True
        except AuthenticationFailed:
            return credentials.username, False

    if logs_in(r.secret_arn, PREVIOUS)[1]:
        raise SystemExit("the master's previous password still works after rotation")
    print("  master: previous password refused, the new one in use (AWSPREVIOUS kept for rollback)")
    for role, arn in role_arns.items():
        user, works = logs_in(arn, PREVIOUS, r.database)
        if not works:
            raise SystemExit(f"{role}: the previous account {user} stopped working")
        print(f"  {role}: previous account {user} still logs in (until the next rotation)")
    same = (
        master.diff("m", master_outs, next_master).changes
        or users.diff("u", users_outs, next_users).changes
    )
    print(f"  `pulumi up` again with the same value: changes={same}")
    if same:
        raise SystemExit("rotating twice with the same value should do nothing")


def current_password(secret_arn: str, region: str) -> str:
    from rotation.secret_store import CURRENT, SecretStore

    version = SecretStore(region).read(secret_arn, CURRENT)
    assert version is not None
    return str(version.value["password"])


def lambda_runner(r: Rehearsal) -> None:
    """7. The lambda runner (appdb:runner: lambda, the default): the providers invoke the in-VPC
    function through the Lambda API; here a local stand-in for that API runs the function's
    archive, built as the program builds it, in a fresh Python with only the archive and boto3.
    The function migrates a fresh schema, rotates the master and flips the application users."""
    from infra.providers.rotation import ApplicationUsersProvider, MasterPasswordRotationProvider
    from migrator.discovery import load_migrations
    from rotation.grants import ROLE_PRIVILEGES
    from standins import lambda_invoke
    from standins.aws import FAKE_CREDENTIALS
    from vpcrunner.archive import RUNTIME, build_archive

    heading("Lambda runner: the providers invoke the function, the function does the work")
    archive = build_archive(ROOT, ROOT / "build")
    print(
        f"  archive {archive.path.relative_to(ROOT)}: {len(archive.files)} files, "
        f"sha256 {archive.sha256[:16]}"
    )
    standin = r.resources.enter_context(lambda_invoke.serving())
    function = f"{PROJECT}-{ENVIRONMENT}-db-runner"
    environment = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": r.aws_endpoint}
    standin.deploy(function, archive.path, timeout=900, environment=environment)
    print(f"  function {function} ({RUNTIME}) on the Lambda stand-in {standin.endpoint_url}")
    database = f"{r.database}_lambda"
    with r.server.root_connection() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
    common = {
        "region": r.region,
        "ca_bundle": str(r.server.ca_path),
        "connect_deadline_seconds": 30,
        "runner": function,
    }
    # The provider's progress lines go to its stderr, which `pulumi up` shows: show them here.
    with contextlib.redirect_stderr(sys.stdout):
        migrations = SchemaMigrationsProvider()
        props = {"secret_arn": r.secret_arn, "host": r.server.host, "port": r.server.port}
        props |= {"database": database, "location": "schema", **common}
        props["migrations"] = load_migrations(ROOT / "schema").checksums()
        created = migrations.create(migrations.check({}, props).inputs)
        print(f"  schema `{database}` at version {(created.outs or {})['applied_version']}")
        master = MasterPasswordRotationProvider()
        master_props = {"secret_arn": r.secret_arn, "host": r.server.host, "port": r.server.port}
        before = dict(
            master.read("m", {**master_props, "rotation": "rehearsal-2", **common}).outs or {}
        )
        rotated = master.update(
            "m",
            {**before, "rotation": "rehearsal-2"},
            master.check({}, {**master_props, "rotation": "rehearsal-3", **common}).inputs,
        )
        users = ApplicationUsersProvider()
        roles = {
            role: {"secret_arn": arn, "host": r.server.host, "port": r.server.port}
            for role, arn in r.role_arns.items()
        }
        users_props = {"master_secret_arn": r.secret_arn, "schema": r.database, "roles": roles}
        users_props |= {"privileges": {k: list(v) for k, v in ROLE_PRIVILEGES.items()}, **common}
        flipped = users.update(
            "u", {}, users.check({}, {**users_props, "rotation": "rehearsal-3"}).inputs
        )
    r.server.admin_password = current_password(r.secret_arn, r.region)
    r.secrets.append(r.server.admin_password)
    for arn in r.role_arns.values():
        r.secrets.append(current_password(arn, r.region))
    print(
        f"  master: AWSCURRENT {str((rotated.outs or {})['version_id'])[:8]} "
        f"(was {str(before['version_id'])[:8]}); active users "
        f"{(flipped.outs or {})['active_users']}"
    )
    table(
        ["invocation", "task", "answer", "python", "function log lines"],
        [
            [
                str(number),
                json.loads(i.event)["task"],
                json.loads(i.answer).get("status", i.function_error or "?"),
                i.python or "?",
                str(len(i.log.splitlines())),
            ]
            for number, i in enumerate(standin.invocations, 1)
        ],
    )
    traffic = "".join(i.event.decode() + i.answer.decode() + i.log for i in standin.invocations)
    leaked = [s for s in r.secrets if s and s in traffic]
    print(f"  passwords in any event, answer or function log: {len(leaked)}")
    if leaked:
        raise SystemExit("a password travelled through the Lambda API")


# The rehearsal, in order. Credential rotation (issue 4) appends its steps after these.
STEPS: list[Callable[[Rehearsal], None]] = [
    show_plans,
    start_standins,
    create_master_secret,
    apply_migrations,
    rerun_is_a_noop,
    rotate_credentials,
    lambda_runner,
]


class _Recorder(io.TextIOBase):
    """Passes output through and keeps a copy, to check that no secret was printed."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        written = self.target.write(text)
        if "\n" in text:  # progress shows as it happens, even through a pipe
            self.target.flush()
        return written

    def flush(self) -> None:
        self.target.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rehearse", description=(__doc__ or "").splitlines()[0])
    plans = parser.add_mutually_exclusive_group()
    plans.add_argument("--no-plan", action="store_true", help="skip the offline plans (step 1)")
    plans.add_argument(
        "--full-plan",
        action="store_true",
        help="after each stack's summary, print its full plan (every resource and property)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    global _step_label
    options = build_parser().parse_args(argv)
    # The provider resolves relative paths (schema/, the CA bundle) against the project
    # directory, as Pulumi's provider host does: it runs there.
    os.chdir(ROOT)
    # moto's server logs every request; the rehearsal prints what matters itself.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    steps = [s for s in STEPS if not (options.no_plan and s is show_plans)]

    recorder = _Recorder(sys.stdout)
    rehearsal = Rehearsal(options=options)
    with rehearsal.resources, contextlib.redirect_stdout(recorder):  # type: ignore[type-var]
        started = time.perf_counter()
        for number, step in enumerate(steps, start=1):
            _step_label = f"[{number}/{len(steps)}] "
            step_started = time.perf_counter()
            step(rehearsal)
            print(f"  ({time.perf_counter() - step_started:.1f}s)")
        print(f"\n{len(steps)} steps in {time.perf_counter() - started:.1f}s.")
        leaked = [s for s in rehearsal.secrets if s and s in recorder.copy.getvalue()]
    if leaked:
        print("FAILED: a password appeared in the rehearsal's output", file=sys.stderr)
        return 1
    print("\nRehearsal complete: no password appeared in this output.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
