"""Master password rotation with Secrets Manager's four-step protocol, over SQL.

The steps are those of AWS's own MySQL rotation functions:

1. createSecret  - generate the new password here (where it is used, as AWS's rotation
                   functions do), copy AWSCURRENT with it and stage it as AWSPENDING, under a
                   ClientRequestToken derived from (secret, rotation value), so a re-run finds
                   the version (and the password) it staged instead of making another.
2. setSecret     - connect with the AWSCURRENT credentials and `ALTER USER CURRENT_USER()`;
                   if they no longer work because an earlier run already set the new
                   password, connect with AWSPENDING instead.
3. testSecret    - open a fresh connection with the AWSPENDING credentials.
4. finishSecret  - move AWSCURRENT to the new version (Secrets Manager moves AWSPREVIOUS to
                   the old one) and clear AWSPENDING.

If testSecret fails, the password is set back to the AWSCURRENT value over the session that
set it (still open), nothing is promoted, and RotationFailed says what happened: the old
credentials keep working and a re-run resumes from the staged version.

Over SQL the change is immediate. The same change through the RDS API (ModifyDBInstance
MasterUserPassword) would wait for the maintenance window unless apply_immediately is set,
and would race this protocol; which is why the RDS instance resource only carries the
initial password (see infra/rotation.py).
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
    server_identified_by,
)
from rotation.errors import RotationError, RotationFailed
from rotation.passwords import generate_password
from rotation.secret_store import CURRENT, PENDING, PREVIOUS, SecretStore, SecretVersion
from rotation.tokens import claim_version


@dataclass(frozen=True)
class MasterRotation:
    secret_arn: str
    rotation: str = ""  # the config value `appdb:credentialsRotation`
    password_length: int = 32  # of the password generated for this rotation
    host: str | None = None  # writer endpoint (None: the one in the secret)
    port: int | None = None
    region: str | None = None
    ca_bundle: str | None = None
    connect_deadline: float = 300.0  # setSecret: a fresh endpoint may take minutes
    test_deadline: float = 30.0  # testSecret: retry window for the new credentials


@dataclass(frozen=True)
class MasterRotationResult:
    version_id: str  # the version now AWSCURRENT
    previous_version_id: str | None  # the version now AWSPREVIOUS (the rollback target)
    rotated: bool  # False when this rotation had already completed


def token_parts(secret_arn: str, rotation: str) -> tuple[str, ...]:
    return ("master", secret_arn, rotation)


def rotate_master(request: MasterRotation) -> MasterRotationResult:
    store = SecretStore(request.region)
    current = store.read(request.secret_arn, CURRENT)
    if current is None:
        raise RotationError(
            f"secret {request.secret_arn} has no AWSCURRENT value: the initial secret version "
            "(written when the instance was created) must exist before rotation"
        )
    token, staged = claim_version(
        store, request.secret_arn, token_parts(request.secret_arn, request.rotation)
    )
    if staged is not None and CURRENT in staged.stages:
        return MasterRotationResult(
            token, store.version_with(request.secret_arn, PREVIOUS), rotated=False
        )
    pending = create_secret(store, request, token, current, staged)
    session = set_secret(request, current, pending)
    try:
        test_secret(request, current, pending, token, session)
    finally:
        session.close()
    previous = finish_secret(store, request.secret_arn, token)
    return MasterRotationResult(token, previous, rotated=True)


def create_secret(
    store: SecretStore,
    request: MasterRotation,
    token: str,
    current: SecretVersion,
    staged: SecretVersion | None,
) -> SecretVersion:
    if staged is not None:
        return staged  # an earlier run staged it: reuse, never stage a second value
    value = dict(current.value)
    value["password"] = generate_password(request.password_length)
    if request.host:
        value["host"] = request.host
    if request.port:
        value["port"] = request.port
    store.stage_pending(request.secret_arn, token, value)
    return SecretVersion(token, (PENDING,), value)


def set_secret(
    request: MasterRotation, current: SecretVersion, pending: SecretVersion
) -> pymysql.connections.Connection:
    """Set the pending password; returns the session that did it (kept for a rollback)."""
    old = parse(request.secret_arn, current.value)
    new = parse(request.secret_arn, pending.value)
    connect = functools.partial(
        connect_as,
        host=new.host,
        port=new.port,
        ca_bundle=request.ca_bundle,
        connect_deadline=request.connect_deadline,
    )
    try:
        session = connect(old)
    except AuthenticationFailed:
        try:
            # The AWSCURRENT password is refused: an earlier run may have set the new one.
            return connect(new)
        except AuthenticationFailed:
            raise RotationFailed(
                f"master rotation of {request.secret_arn} failed at setSecret: "
                f"{new.host}:{new.port} accepts neither the AWSCURRENT nor the AWSPENDING "
                f"password for user {new.username!r}, so the secret and the database disagree. "
                "Nothing was promoted. Restore a known password (see docs/rotation.md) "
                "and re-run."
            ) from None
    except ConnectionFailed as exc:
        raise RotationFailed(
            f"master rotation of {request.secret_arn} failed at setSecret: {exc}. "
            "Nothing was changed."
        ) from None
    try:
        with session.cursor() as cursor:
            set_own_password(cursor, new.password)
    except pymysql.err.MySQLError as exc:
        session.close()
        raise RotationFailed(
            f"master rotation of {request.secret_arn} failed at setSecret: the server refused "
            f"the new password for {new.username!r} (error {exc.args[0]}: {exc.args[1]}). "
            "Nothing was promoted; the AWSCURRENT password still works."
        ) from None
    return session


def set_own_password(cursor: pymysql.cursors.Cursor, password: str) -> None:
    """ALTER USER on the session's own account, named explicitly: MariaDB 10.11 accepts
    `ALTER USER CURRENT_USER() IDENTIFIED BY ...` but silently leaves the password as it was,
    while the explicit 'user'@'host' form works on MariaDB and MySQL 8 alike."""
    cursor.execute("SELECT CURRENT_USER()")
    row = cursor.fetchone()
    user, _, host = str(row[0] if row else "").rpartition("@")
    clause = server_identified_by(cursor)  # caching_sha2_password on MySQL (rotation.database)
    cursor.execute(f"ALTER USER %s@%s {clause}", (user, host, password))


def test_secret(
    request: MasterRotation,
    current: SecretVersion,
    pending: SecretVersion,
    token: str,
    session: pymysql.connections.Connection,
) -> None:
    new = parse(request.secret_arn, pending.value)
    try:
        probe_login(new, ca_bundle=request.ca_bundle, connect_deadline=request.test_deadline)
        return
    except ConnectionFailed as exc:
        cause = str(exc)
    old = parse(request.secret_arn, current.value)
    try:
        with session.cursor() as cursor:
            set_own_password(cursor, old.password)
        restored = "the database password was set back to the AWSCURRENT value"
    except pymysql.err.MySQLError as exc:
        restored = (
            f"setting the password back FAILED (error {exc.args[0]}), so the database holds "
            "the AWSPENDING password: re-run, or roll back as docs/rotation.md describes"
        )
    raise RotationFailed(
        f"master rotation of {request.secret_arn} failed at testSecret: connecting with the "
        f"new password failed ({cause}). Nothing was promoted: AWSCURRENT is still version "
        f"{current.version_id} and {restored}. The new value stays staged as AWSPENDING "
        f"(version {token}); fix the cause and re-run `pulumi up` to resume."
    )


def finish_secret(store: SecretStore, secret_arn: str, token: str) -> str | None:
    return store.promote(secret_arn, token)


def update_endpoint(secret_arn: str, host: str, port: int, region: str | None = None) -> str | None:
    """Publish a new writer endpoint in the master secret without touching the password
    (a new version, promoted the same way). Returns the new version id, None if unchanged."""
    store = SecretStore(region)
    current = store.read(secret_arn, CURRENT)
    if current is None:
        raise RotationError(f"secret {secret_arn} has no AWSCURRENT value")
    if current.value.get("host") == host and int(current.value.get("port", 0)) == port:
        return None
    value = {**current.value, "host": host, "port": port}
    token, staged = claim_version(
        store, secret_arn, ("endpoint", secret_arn, current.version_id, host, str(port))
    )
    if staged is None:
        store.stage_pending(secret_arn, token, value)
    store.promote(secret_arn, token)
    return token
