"""Least-privilege application users with two alternating accounts per role.

Each role (`app`, `readonly`; privileges in rotation.grants.ROLE_PRIVILEGES) has a Secrets
Manager secret in the standard RDS shape and two database accounts, `<role>_a` and
`<role>_b`. A rotation gives the INACTIVE account a freshly generated password (made here,
written straight to Secrets Manager, never seen by Pulumi) and the declared grants, tests it,
then flips the secret to it. The previously active account is untouched, so a client holding
the old secret value keeps working until the rotation after next; clients that re-read the
secret when a login is refused never see a failed connection.

Every apply also repairs grants on all existing accounts of every role (drift repair).
Accounts are created on the writer; RDS read replicas replicate them (the mysql schema is
replicated like any other), so the readonly secret can point at a replica.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pymysql

from migrator.secrets import DatabaseSecret, fetch_database_secret
from rotation.database import (
    AuthenticationFailed,
    ConnectionFailed,
    connect_as_master,
    probe_login,
    server_identified_by,
)
from rotation.errors import RotationError, RotationFailed
from rotation.grants import (
    ROLE_PRIVILEGES,
    read_grants,
    repair_grants,
    users_for,
)
from rotation.passwords import generate_password
from rotation.secret_store import CURRENT, SecretStore, SecretVersion
from rotation.tokens import claim_version


@dataclass(frozen=True)
class RoleEndpoint:
    secret_arn: str  # the role's secret (created empty by the stack)
    host: str  # where the role's clients connect: the writer, or a read replica for readonly
    port: int


@dataclass(frozen=True)
class ApplicationUsers:
    master_secret_arn: str
    schema: str
    roles: Mapping[str, RoleEndpoint]
    rotation: str = ""  # the config value `appdb:credentialsRotation`
    privileges: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(ROLE_PRIVILEGES))
    region: str | None = None
    ca_bundle: str | None = None
    connect_deadline: float = 300.0
    test_deadline: float = 60.0  # a replica may take a moment to replicate a new password
    # Accounts are <prefix><role>_a / _b. Accounts are server-wide while schemas are not:
    # a prefix keeps several application schemas on one server apart.
    account_prefix: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.roles) - set(self.privileges))
        if unknown:
            raise RotationError(
                f"role(s) {', '.join(unknown)} have no declared privileges; "
                f"declared roles: {', '.join(sorted(self.privileges))}"
            )


@dataclass(frozen=True)
class RoleState:
    role: str
    active_user: str | None
    version_id: str | None
    grants: dict[str, list[str] | None]  # user -> 'PRIV ON target' lines (None: no such user)
    rotated: bool = False


def token_parts(request: ApplicationUsers, role: str) -> tuple[str, ...]:
    endpoint = request.roles[role]
    return (
        "app-user",
        endpoint.secret_arn,
        role,
        request.rotation,
        endpoint.host,
        str(endpoint.port),
        request.schema,
    )


def apply_application_users(request: ApplicationUsers) -> dict[str, RoleState]:
    """Make every role's secret hold this rotation's credentials, and repair all grants.

    Idempotent: a role whose AWSCURRENT version already is this rotation's is not rotated
    again; a run interrupted between staging and promotion resumes the staged version.
    """
    store = SecretStore(request.region)
    session = _master_session(request)
    try:
        return {role: _apply_role(request, store, session, role) for role in request.roles}
    except pymysql.err.MySQLError as exc:
        raise _server_refused(exc) from None
    finally:
        session.close()


def read_application_users(request: ApplicationUsers) -> dict[str, RoleState]:
    """What is there now: active account per role and the grants of every account."""
    store = SecretStore(request.region)
    session = _master_session(request)
    try:
        states = {}
        for role, endpoint in request.roles.items():
            with session.cursor() as cursor:
                grants = _grant_lines(cursor, role, request.account_prefix)
            states[role] = _role_state(role, store.read(endpoint.secret_arn, CURRENT), grants)
        return states
    except pymysql.err.MySQLError as exc:
        raise _server_refused(exc) from None
    finally:
        session.close()


def _server_refused(exc: pymysql.err.MySQLError) -> RotationFailed:
    # Statements are parameterised, so the server's message never quotes a password.
    code, message = (exc.args[0], exc.args[1]) if len(exc.args) >= 2 else ("?", str(exc))
    return RotationFailed(
        f"application users: the server refused a statement (error {code}: {message}). "
        "A role whose secret was not flipped keeps its working account; fix the cause and "
        "re-run (a staged rotation resumes)."
    )


def _master_session(request: ApplicationUsers) -> pymysql.connections.Connection:
    def fetch() -> DatabaseSecret:
        return fetch_database_secret(request.master_secret_arn, request.region)

    try:
        return connect_as_master(
            fetch, ca_bundle=request.ca_bundle, connect_deadline=request.connect_deadline
        )
    except ConnectionFailed as exc:
        raise RotationFailed(
            f"application users: cannot connect as the master user: {exc}"
        ) from None


def _grant_lines(
    cursor: pymysql.cursors.Cursor, role: str, prefix: str
) -> dict[str, list[str] | None]:
    lines: dict[str, list[str] | None] = {}
    for user in users_for(role, prefix):
        grants = read_grants(cursor, user)
        lines[user] = grants.describe() if grants is not None else None
    return lines


def _apply_role(
    request: ApplicationUsers,
    store: SecretStore,
    session: pymysql.connections.Connection,
    role: str,
) -> RoleState:
    endpoint = request.roles[role]
    privileges = request.privileges[role]
    current = store.read(endpoint.secret_arn, CURRENT)
    token, staged = claim_version(store, endpoint.secret_arn, token_parts(request, role))
    rotated = staged is None or CURRENT not in staged.stages
    if rotated:
        current = _rotate_role(request, store, session, role, current, token, staged)
    grants: dict[str, list[str] | None] = {}
    with session.cursor() as cursor:
        # Drift repair on every account of the role, active or not: one SHOW GRANTS per
        # account, and a second only where statements were run.
        for user in users_for(role, request.account_prefix):
            actual = read_grants(cursor, user)
            if actual is not None and repair_grants(
                cursor, user, request.schema, privileges, actual
            ):
                actual = read_grants(cursor, user)
            grants[user] = actual.describe() if actual is not None else None
    return _role_state(role, current, grants, rotated)


def _role_state(
    role: str,
    current: SecretVersion | None,
    grants: dict[str, list[str] | None],
    rotated: bool = False,
) -> RoleState:
    """The role as its secret's AWSCURRENT version names it, with its accounts' grants."""
    return RoleState(
        role,
        current.value.get("username") if current else None,
        current.version_id if current else None,
        grants,
        rotated,
    )


def _rotate_role(
    request: ApplicationUsers,
    store: SecretStore,
    session: pymysql.connections.Connection,
    role: str,
    current: SecretVersion | None,
    token: str,
    staged: SecretVersion | None,
) -> SecretVersion:
    """Rotate the role to the version `token`; returns that version, now AWSCURRENT."""
    endpoint = request.roles[role]
    active = current.value.get("username") if current else None
    first, second = users_for(role, request.account_prefix)
    if staged is not None:
        # Resume: an earlier run staged this value; set exactly it (it may already be set).
        user, password = str(staged.value["username"]), str(staged.value["password"])
        if user == active:
            raise RotationError(
                f"secret {endpoint.secret_arn}: the staged AWSPENDING version {token} names the "
                f"active account {user!r}; refusing to change the password clients use"
            )
    else:
        user, password = (second if active == first else first), generate_password()
    value = {
        "engine": "mysql",
        "host": endpoint.host,
        "port": endpoint.port,
        "username": user,
        "password": password,
        "dbname": request.schema,
    }
    # createSecret. A secret's first version is AWSCURRENT at once, so when the secret is
    # still empty the account is set up and tested BEFORE anything is written to it.
    if staged is None and current is not None:
        store.stage_pending(endpoint.secret_arn, token, value)
    _set_account(session, user, password, request.schema, request.privileges[role])
    _test_account(request, role, user, password)
    if staged is None and current is None:
        store.stage_pending(endpoint.secret_arn, token, value)
    store.promote(endpoint.secret_arn, token)
    return SecretVersion(token, (CURRENT,), staged.value if staged is not None else value)


def _set_account(
    session: pymysql.connections.Connection,
    user: str,
    password: str,
    schema: str,
    privileges: Sequence[str],
) -> None:
    """setSecret: create or re-password the account; TLS required; exactly its grants."""
    with session.cursor() as cursor:
        # CREATE ... IF NOT EXISTS leaves an existing account's password alone, hence the
        # ALTER; both are MySQL 8 and MariaDB syntax, with the plugin named on MySQL only
        # (caching_sha2_password, which 8.4 enables: rotation.database.identified_by).
        clause = server_identified_by(cursor)
        cursor.execute(f"CREATE USER IF NOT EXISTS %s@'%%' {clause} REQUIRE SSL", (user, password))
        cursor.execute(f"ALTER USER %s@'%%' {clause} REQUIRE SSL", (user, password))
        repair_grants(cursor, user, schema, privileges)


def _test_account(request: ApplicationUsers, role: str, user: str, password: str) -> None:
    """testSecret: log in where the role's clients will (a replica may lag a little)."""
    endpoint = request.roles[role]
    secret = DatabaseSecret("mysql", endpoint.host, endpoint.port, user, password, request.schema)
    deadline = time.monotonic() + request.test_deadline
    while True:
        try:
            probe_login(
                secret,
                database=request.schema,
                ca_bundle=request.ca_bundle,
                connect_deadline=max(1.0, deadline - time.monotonic()),
            )
            return
        except AuthenticationFailed as exc:
            if time.monotonic() >= deadline:
                raise _test_failed(request, role, user, str(exc)) from None
            time.sleep(0.5)  # replication of the new password to a replica
        except ConnectionFailed as exc:
            raise _test_failed(request, role, user, str(exc)) from None


def _test_failed(request: ApplicationUsers, role: str, user: str, cause: str) -> RotationFailed:
    endpoint = request.roles[role]
    return RotationFailed(
        f"rotation of role {role!r} failed at testSecret: {user!r} cannot log in at "
        f"{endpoint.host}:{endpoint.port} ({cause}). The secret {endpoint.secret_arn} was not "
        "flipped: its AWSCURRENT account still works. Fix the cause and re-run."
    )
