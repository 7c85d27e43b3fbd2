"""Put AWSPREVIOUS back: the way out of a rotation that turned out badly.

- Master: the previous password is set on the database over SQL (connected with the current
  one, or with the previous one if the database already has it), a fresh login with it is
  tested, and only then AWSCURRENT moves back to the previous version.
- Application roles: no SQL at all. The previous account still has its password and grants
  (it is not touched until the next rotation), so after a test login the secret flips back.

Moving AWSCURRENT back leaves the rotated version as AWSPREVIOUS, so a second rollback would
restore the very credentials the first one removed. The rolled-back version is therefore
labelled `appdb-rolled-back` (a custom staging label: a label sits on one version at a time,
https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_UpdateSecretVersionStage.html)
and a rollback whose AWSPREVIOUS carries it is refused. The way on is forward.

Pulumi's state is not changed: the next rotation is simply the next new value of
`appdb:credentialsRotation`, and `pulumi up` with an unchanged value does nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pymysql

from rotation.database import (
    AuthenticationFailed,
    ConnectionFailed,
    connect_as,
    parse,
    probe_login,
)
from rotation.errors import RotationError, RotationFailed
from rotation.master import set_own_password
from rotation.secret_store import CURRENT, PREVIOUS, SecretStore, SecretVersion


@dataclass(frozen=True)
class RollbackResult:
    secret_arn: str
    username: str  # the account the secret names now
    version_id: str  # now AWSCURRENT (was AWSPREVIOUS)
    rolled_back_version_id: str  # now AWSPREVIOUS (was AWSCURRENT)


# On the version a rollback moved AWSCURRENT away from (see the module docstring).
ROLLED_BACK = "appdb-rolled-back"


def _versions(store: SecretStore, secret_arn: str) -> tuple[SecretVersion, SecretVersion]:
    current = store.read(secret_arn, CURRENT)
    previous = store.read(secret_arn, PREVIOUS)
    if current is None or previous is None:
        raise RotationError(
            f"secret {secret_arn} has no {'AWSCURRENT' if current is None else 'AWSPREVIOUS'} "
            "version: there is nothing to roll back to"
        )
    if ROLLED_BACK in previous.stages:
        raise RotationError(
            f"secret {secret_arn} is already rolled back: its AWSPREVIOUS (version "
            f"{previous.version_id}, labelled {ROLLED_BACK}) is the rotation that was rolled "
            "back, and rolling back again would restore it. Nothing was changed. To move on, "
            "rotate forward: set a new appdb:credentialsRotation and run `pulumi up`"
        )
    return current, previous


def _test_login(
    secret_arn: str, version: SecretVersion, ca_bundle: str | None, deadline: float
) -> None:
    credentials = parse(secret_arn, version.value)
    try:
        probe_login(
            credentials,
            database=credentials.dbname or "",
            ca_bundle=ca_bundle,
            connect_deadline=deadline,
        )
    except ConnectionFailed as exc:
        raise RotationFailed(
            f"rollback of {secret_arn}: the AWSPREVIOUS credentials do not log in ({exc}); "
            "AWSCURRENT was left where it is"
        ) from None


def _test_and_flip_back(
    store: SecretStore,
    secret_arn: str,
    current: SecretVersion,
    previous: SecretVersion,
    ca_bundle: str | None,
    connect_deadline: float,
) -> RollbackResult:
    """AWSCURRENT back to the previous version, once a fresh login with it works."""
    _test_login(secret_arn, previous, ca_bundle, connect_deadline)
    store.move_current(secret_arn, previous.version_id, current.version_id)
    try:
        store.attach_label(secret_arn, ROLLED_BACK, current.version_id)
    except RotationError as exc:
        raise RotationError(
            f"rollback of {secret_arn}: done (AWSCURRENT is version {previous.version_id} "
            f"again), but marking version {current.version_id} as rolled back failed ({exc}): "
            "do not run the rollback again, it would undo this one"
        ) from None
    return RollbackResult(
        secret_arn, str(previous.value.get("username")), previous.version_id, current.version_id
    )


def rollback_master(
    secret_arn: str,
    *,
    region: str | None = None,
    ca_bundle: str | None = None,
    connect_deadline: float = 60.0,
) -> RollbackResult:
    store = SecretStore(region)
    current, previous = _versions(store, secret_arn)
    now, before = parse(secret_arn, current.value), parse(secret_arn, previous.value)
    connect = functools.partial(
        connect_as,
        host=now.host,
        port=now.port,
        ca_bundle=ca_bundle,
        connect_deadline=connect_deadline,
    )
    try:
        try:
            session = connect(now)
        except AuthenticationFailed:
            # The database may already have the previous password (a half-done rollback).
            session = connect(before)
    except ConnectionFailed as exc:
        raise RotationFailed(
            f"rollback of {secret_arn}: cannot connect with the AWSCURRENT or the AWSPREVIOUS "
            f"password ({exc}); nothing was changed"
        ) from None
    try:
        with session.cursor() as cursor:
            set_own_password(cursor, before.password)
    except pymysql.err.MySQLError as exc:
        raise RotationFailed(
            f"rollback of {secret_arn}: the server refused the previous password "
            f"(error {exc.args[0]}: {exc.args[1]}); nothing was changed"
        ) from None
    finally:
        session.close()
    return _test_and_flip_back(store, secret_arn, current, previous, ca_bundle, connect_deadline)


def rollback_role(
    secret_arn: str,
    *,
    region: str | None = None,
    ca_bundle: str | None = None,
    connect_deadline: float = 60.0,
) -> RollbackResult:
    store = SecretStore(region)
    current, previous = _versions(store, secret_arn)
    return _test_and_flip_back(store, secret_arn, current, previous, ca_bundle, connect_deadline)
