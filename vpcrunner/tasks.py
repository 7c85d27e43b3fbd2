"""The database work itself: what one invocation of the in-VPC function does (or the provider,
in its own process, with the `direct` runner).

An invocation's event is `{"task": ..., "request": {...}, "options": {...}}`: the task's name,
its typed request (vpcrunner.requests, the resource's inputs) and per-invocation options. The
answer is JSON too: `{"status": ..., ...}` with status

- `done`: the work is finished; `result` holds what the resource records;
- `stopped`: the invocation reached its soft deadline between two packets of migrations;
  `progress` says where (the next invocation carries on from there);
- `lock_busy`: another session holds the migration lock (e.g. the previous invocation's packet
  still running on the server); `progress` is what history shows it doing;
- `snapshot_needed`: migrations are pending and the request wants an RDS snapshot first, which
  the provider takes (a public AWS API, no database) before invoking again;
- `failed`: `error` is one readable, secret-free message.

Credentials are read from Secrets Manager here, when the work runs: no password is ever part of
an event, an answer, or a log line. New passwords (master, application users) are generated
here too, where they are set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pymysql

from migrator import history as migrator_history
from migrator import secrets as migrator_secrets
from migrator.connection import ConnectionSettings, connect
from migrator.discovery import MigrationSet, load_migrations, parse_name, version_key
from migrator.engine import MigrationOptions, Migrator
from migrator.errors import AuthenticationFailed, LockTimeoutError, MigrationError
from rotation.app_users import ApplicationUsers, RoleEndpoint, RoleState
from rotation.app_users import apply_application_users as apply_users
from rotation.app_users import read_application_users as read_users
from rotation.errors import RotationError
from rotation.master import MasterRotation, rotate_master, update_endpoint
from rotation.secret_store import CURRENT, PREVIOUS, SecretStore
from vpcrunner.requests import (
    ApplicationUsersRequest,
    InvalidInputs,
    MasterRotationRequest,
    MigrationRequest,
    resolve,
)

T = TypeVar("T")


@dataclass
class Invocation:
    """What a task knows about the invocation running it."""

    root: Path  # the directory holding schema/ and the CA bundle (archive or project)
    stop_after: float  # time.monotonic(): start no new packet of migrations after this
    log: Callable[[str], None] = print
    lines: list[str] = field(default_factory=list)  # what it logged, returned to the provider

    def say(self, line: str) -> None:
        self.lines.append(line)
        self.log(line)


def run(event: Mapping[str, Any], invocation: Invocation) -> dict[str, Any]:
    """Run the event's task; every outcome, failures included, is an answer (never a raise)."""
    task = str(event.get("task", ""))
    options = event.get("options") or {}
    handler = TASKS.get(task)
    if handler is None:
        return _answer(invocation, "failed", error=f"unknown task {task!r}; known: {sorted(TASKS)}")
    try:
        answer = handler(event.get("request") or {}, options, invocation)
    except (MigrationError, RotationError, InvalidInputs) as error:
        return _answer(invocation, "failed", error=str(error))
    answer["log"] = invocation.lines
    return answer


def _answer(invocation: Invocation, status: str, **fields: Any) -> dict[str, Any]:
    return {"status": status, **fields, "log": invocation.lines}


# --- schema migrations ---------------------------------------------------------------------


def highest_version(scripts: Mapping[str, str] | list[str]) -> str | None:
    """The highest version among versioned script names (numeric, part by part), or None."""
    versions = [
        parsed[1] for script in scripts if (parsed := parse_name(script)) and parsed[1] is not None
    ]
    return max(versions, key=version_key) if versions else None


def planned_migrations(request: MigrationRequest, root: Path) -> MigrationSet:
    """The files under `root`, verified against the checksums the update was planned with:
    what runs is exactly what preview showed, or nothing runs."""
    migrations = load_migrations(resolve(root, request.location))
    on_disk = migrations.checksums()
    planned = request.migrations
    differing = sorted(
        s for s in on_disk.keys() | planned.keys() if on_disk.get(s) != planned.get(s)
    )
    if differing:
        raise MigrationError(
            f"the files in {request.location}/ differ from the migration map this update was "
            f"planned with ({', '.join(differing)}); nothing was applied. Run `pulumi up` again "
            "to plan with the current files (and, with the lambda runner, deploy them)"
        )
    return migrations


def _ca_bundle(root: Path, path: str | None) -> str | None:
    """The CA bundle to open (None: the system trust store)."""
    return str(resolve(root, path)) if path else None


def connection_settings(
    request: MigrationRequest, secret: migrator_secrets.DatabaseSecret, root: Path
) -> ConnectionSettings:
    return ConnectionSettings(
        host=request.host,
        port=request.port,
        user=secret.username,
        password=secret.password,
        database=request.database,
        ca_bundle=_ca_bundle(root, request.ca_bundle),
        connect_deadline=float(request.connect_deadline_seconds),
    )


def with_current_secret(
    request: MigrationRequest, root: Path, action: Callable[[ConnectionSettings], T]
) -> T:
    """Run `action` with credentials read now; on an authentication failure read them again once.

    A rotation can promote a new password between our read of the secret and our connection;
    the second read picks it up. A second failure is final.
    """

    def settings() -> ConnectionSettings:
        return connection_settings(
            request,
            migrator_secrets.fetch_database_secret(request.secret_arn, request.region),
            root,
        )

    try:
        return action(settings())
    except AuthenticationFailed:
        pass
    try:
        return action(settings())
    except AuthenticationFailed as error:
        raise MigrationError(
            f"{error} (the secret {request.secret_arn} was read again and the retry was "
            "rejected too: check that the secret's AWSCURRENT value is the database's password)"
        ) from None


def _migrate(
    raw: Mapping[str, Any], options: Mapping[str, Any], invocation: Invocation
) -> dict[str, Any]:
    request = MigrationRequest.parse(raw)
    migrations = planned_migrations(request, invocation.root)
    # Never wait for the lock past the invocation's own deadline: answer `lock_busy` instead.
    lock_wait = float(options.get("lock_wait_seconds") or request.lock_wait_seconds)
    lock_wait = max(1.0, min(lock_wait, invocation.stop_after - time.monotonic()))
    engine_options = MigrationOptions(
        out_of_order=request.out_of_order,
        lock_wait_seconds=lock_wait,
        statement_lock_wait_seconds=request.statement_lock_wait_seconds,
        stop_after=invocation.stop_after,
    )

    def work(settings: ConnectionSettings) -> dict[str, Any]:
        migrator = Migrator(settings, migrations, engine_options)
        if request.snapshot_before_migrate and not options.get("snapshot_taken"):
            steps = migrator.plan()  # validates first: nothing to snapshot for a refused plan
            if steps:
                target = highest_version([s.migration.script for s in steps])
                return {"status": "snapshot_needed", "target_version": target}
        try:
            result = migrator.migrate()
        except LockTimeoutError as busy:
            return {"status": "lock_busy", "error": str(busy), "progress": _in_flight(settings)}
        for script in result.applied:
            invocation.say(f"applied {script}")
        remaining = [m.script for m in migrations if result.checksums.get(m.script) != m.checksum]
        recorded = {
            "applied": result.checksums,
            "applied_version": result.current_version or highest_version(result.checksums),
        }
        if result.stopped is None:
            return {"status": "done", "result": recorded, "applied_now": result.applied}
        stopped = result.stopped
        invocation.say(
            f"stopped before statement {stopped.statement} of {stopped.statements_total} of "
            f"{stopped.script} (the invocation's deadline)"
        )
        return {
            "status": "stopped",
            "applied_now": result.applied,
            "remaining": remaining,
            "progress": {
                "script": stopped.script,
                "statement": stopped.statement,
                "statements_total": stopped.statements_total,
            },
            "result": recorded,
        }

    return with_current_secret(request, invocation.root, work)


def _in_flight(settings: ConnectionSettings) -> dict[str, Any] | None:
    """What history says the lock holder is doing: the latest row still in progress (read
    without the lock; the holder commits each progress write before its next statement)."""
    table = migrator_history.qualified_table(settings.database)
    try:
        conn = connect(settings)
    except MigrationError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT script, statements_done, statements_total FROM {table} "
                f"WHERE state = %s ORDER BY installed_rank DESC LIMIT 1",
                (migrator_history.IN_PROGRESS,),
            )
            row = cur.fetchone()
    except pymysql.err.MySQLError:
        return None
    finally:
        conn.close()
    if row is None:
        return None
    return {"script": row[0], "statement": int(row[1]) + 1, "statements_total": int(row[2])}


def _applied(
    raw: Mapping[str, Any], _options: Mapping[str, Any], invocation: Invocation
) -> dict[str, Any]:
    """`pulumi refresh`: the applied set from history alone (no file is read or verified)."""
    request = MigrationRequest.parse(raw)
    migrations = load_migrations(resolve(invocation.root, request.location))
    applied = with_current_secret(
        request,
        invocation.root,
        lambda settings: Migrator(settings, migrations).applied_checksums(),
    )
    return {"status": "done", "result": {"applied": applied}}


# --- master password -----------------------------------------------------------------------


def _master(request: MasterRotationRequest, root: Path) -> MasterRotation:
    return MasterRotation(
        secret_arn=request.secret_arn,
        rotation=request.rotation,
        password_length=request.password_length,
        host=request.host,
        port=request.port,
        region=request.region,
        ca_bundle=_ca_bundle(root, request.ca_bundle),
        connect_deadline=float(request.connect_deadline_seconds),
        test_deadline=float(request.test_deadline_seconds),
    )


def _versions(request: MasterRotationRequest) -> dict[str, Any]:
    current, previous = SecretStore(request.region).versions_with(
        request.secret_arn, CURRENT, PREVIOUS
    )
    return {"version_id": current, "previous_version_id": previous}


def _master_rotate(
    raw: Mapping[str, Any], _options: Mapping[str, Any], invocation: Invocation
) -> dict[str, Any]:
    request = MasterRotationRequest.parse(raw)
    result = rotate_master(_master(request, invocation.root))
    if result.rotated:
        invocation.say(f"master password rotated (rotation {request.rotation!r})")
    return {
        "status": "done",
        "result": {
            "version_id": result.version_id,
            "previous_version_id": result.previous_version_id,
            "rotated": result.rotated,
        },
    }


def _master_endpoint(
    raw: Mapping[str, Any], _options: Mapping[str, Any], _invocation: Invocation
) -> dict[str, Any]:
    """Publish the writer endpoint in the master secret (no password change)."""
    request = MasterRotationRequest.parse(raw)
    update_endpoint(request.secret_arn, request.host, request.port, request.region)
    return {"status": "done", "result": _versions(request)}


def _master_read(
    raw: Mapping[str, Any], _options: Mapping[str, Any], _invocation: Invocation
) -> dict[str, Any]:
    return {"status": "done", "result": _versions(MasterRotationRequest.parse(raw))}


# --- application users ---------------------------------------------------------------------


def _users(request: ApplicationUsersRequest, root: Path) -> ApplicationUsers:
    return ApplicationUsers(
        master_secret_arn=request.master_secret_arn,
        schema=request.schema,
        roles={
            role: RoleEndpoint(target.secret_arn, target.host, target.port)
            for role, target in request.roles.items()
        },
        rotation=request.rotation,
        privileges={role: list(granted) for role, granted in request.privileges.items()},
        region=request.region,
        ca_bundle=_ca_bundle(root, request.ca_bundle),
        connect_deadline=float(request.connect_deadline_seconds),
        test_deadline=float(request.test_deadline_seconds),
        account_prefix=request.account_prefix,
    )


def _users_result(states: Mapping[str, RoleState]) -> dict[str, Any]:
    return {
        "active_users": {role: s.active_user for role, s in states.items()},
        "version_ids": {role: s.version_id for role, s in states.items()},
        "grants": {user: lines for s in states.values() for user, lines in s.grants.items()},
    }


def _users_apply(
    raw: Mapping[str, Any], _options: Mapping[str, Any], invocation: Invocation
) -> dict[str, Any]:
    states = apply_users(_users(ApplicationUsersRequest.parse(raw), invocation.root))
    for role, state in states.items():
        if state.rotated:
            invocation.say(f"role {role}: now {state.active_user}")
    return {"status": "done", "result": _users_result(states)}


def _users_read(
    raw: Mapping[str, Any], _options: Mapping[str, Any], invocation: Invocation
) -> dict[str, Any]:
    states = read_users(_users(ApplicationUsersRequest.parse(raw), invocation.root))
    return {"status": "done", "result": _users_result(states)}


TASKS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], Invocation], dict[str, Any]]] = {
    "migrate": _migrate,
    "migrations.read": _applied,
    "master.rotate": _master_rotate,
    "master.endpoint": _master_endpoint,
    "master.read": _master_read,
    "users.apply": _users_apply,
    "users.read": _users_read,
}
