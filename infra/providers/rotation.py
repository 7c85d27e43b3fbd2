"""Dynamic providers for credential rotation: thin adapters from Pulumi's lifecycle to `rotation`.

- `MasterPasswordRotation` rotates the master password with Secrets Manager's protocol
  (rotation.master) whenever `appdb:credentialsRotation` - and so the keeper-bound
  RandomPassword it receives as a SECRET input - changes. Its outputs never carry the password.
- `ApplicationUsers` keeps the `app`/`readonly` accounts, their grants and their secrets in
  line with the rotation value (rotation.app_users). Their passwords are generated in the
  provider and written straight to Secrets Manager: they are never inputs, outputs or state.

Like the migration provider: `check`/`diff` run during preview and connect to nothing (they
compare inputs with the outputs of the last apply); `read` (`pulumi refresh`, or
`pulumi up --refresh`) looks at the database and the secrets, so a grant changed by hand shows
up as a difference that the next update repairs; `delete` leaves accounts and passwords alone.

Serialisation: Pulumi pickles the provider object into the state with dill. These providers
keep no attributes (boto3 clients and connections are created inside each call, endpoint
overrides come from AWS_ENDPOINT_URL, which boto3 reads itself) and their classes live in this
importable module, so they are pickled by reference and nothing secret can ride along.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pulumi
from pulumi import dynamic

from infra.providers.inputs import (
    UNKNOWN,
    ca_bundle_path,
    changed_keys,
    echoed_inputs,
    port_failures,
    required_string_failures,
)
from migrator.errors import MigrationError
from rotation.app_users import (
    ApplicationUsers as ApplicationUsersRequest,
)
from rotation.app_users import (
    RoleEndpoint,
    RoleState,
    apply_application_users,
    read_application_users,
)
from rotation.errors import RotationError
from rotation.grants import desired_grants
from rotation.master import MasterRotation, rotate_master, token_parts, update_endpoint
from rotation.secret_store import CURRENT, PREVIOUS, SecretStore, derive_token

T = TypeVar("T")


class CredentialRotationError(Exception):
    """The one readable, secret-free message `pulumi up` shows when a rotation step fails."""


def _readable(what: str, action: Callable[[], T]) -> T:
    # Rotation reads secrets and connects through `migrator` (secrets, connection), whose
    # errors are secret-free too: SecretError, ConnectionFailed, AuthenticationFailed.
    try:
        return action()
    except (RotationError, MigrationError) as error:
        raise CredentialRotationError(f"{what}: {error}") from None


# --- master password ----------------------------------------------------------------------

MASTER_INPUTS = (
    "secret_arn",
    "region",
    "host",
    "port",
    "rotation",
    "ca_bundle",
    "connect_deadline_seconds",
    "test_deadline_seconds",
)
MASTER_DEFAULTS: dict[str, Any] = {
    "ca_bundle": None,
    "connect_deadline_seconds": 600,
    "test_deadline_seconds": 30,
}


def _master_request(props: Mapping[str, Any]) -> MasterRotation:
    return MasterRotation(
        secret_arn=str(props["secret_arn"]),
        new_password=str(props["new_password"]),
        rotation=str(props["rotation"]),
        host=str(props["host"]),
        port=int(props["port"]),
        region=str(props["region"]),
        ca_bundle=ca_bundle_path(props.get("ca_bundle")),
        connect_deadline=float(props.get("connect_deadline_seconds") or 600),
        test_deadline=float(props.get("test_deadline_seconds") or 30),
    )


def master_rotation_token(props: Mapping[str, Any]) -> str:
    """A one-way fingerprint of (secret, rotation value, password): what `diff` compares."""
    return derive_token(
        *token_parts(str(props["secret_arn"]), str(props["rotation"]), str(props["new_password"]))
    )


def _master_outputs(props: Mapping[str, Any], version_id: str, previous: str | None) -> dict:
    # The password is deliberately not echoed: outputs hold ids and endpoints only.
    return {
        **echoed_inputs(props, MASTER_INPUTS, MASTER_DEFAULTS),
        "rotation_token": master_rotation_token(props),
        "version_id": version_id,
        "previous_version_id": previous,
    }


def _current_and_previous(props: Mapping[str, Any]) -> list[str | None]:
    """The master secret's AWSCURRENT and AWSPREVIOUS version ids (one describe call)."""
    store = SecretStore(str(props["region"]))
    return store.versions_with(str(props["secret_arn"]), CURRENT, PREVIOUS)


class MasterPasswordRotationProvider(dynamic.ResourceProvider):
    """Rotates the master password (rotation.master). Holds no state: see the module docstring."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        failures = required_string_failures(
            news,
            ("secret_arn", "region", "host", "rotation", "new_password"),
            secret_keys=("new_password",),
        )
        failures += port_failures(news)
        return dynamic.CheckResult({**MASTER_DEFAULTS, **news}, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # No AWS or database call: this runs during preview. Never a replacement.
        changed = changed_keys(olds, news, MASTER_INPUTS)
        unknown = UNKNOWN in (news.get(k) for k in ("new_password", "secret_arn", "rotation"))
        if unknown or master_rotation_token(news) != olds.get("rotation_token"):
            changed.append("new_password")
        return dynamic.DiffResult(changes=bool(changed), replaces=[], stables=[])

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        outs = _readable("master password rotation", lambda: self._rotate(props))
        return dynamic.CreateResult(id_=str(props["secret_arn"]), outs=outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        def apply() -> dict[str, Any]:
            if master_rotation_token(news) != olds.get("rotation_token"):
                return self._rotate(news)
            # Same rotation: only the endpoint (or a setting) changed. Publish the endpoint.
            update_endpoint(
                str(news["secret_arn"]), str(news["host"]), int(news["port"]), str(news["region"])
            )
            current, previous = _current_and_previous(news)
            return _master_outputs(news, str(current), previous)

        return dynamic.UpdateResult(outs=_readable("master password rotation", apply))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        def current() -> dict[str, Any]:
            # A rollback to AWSPREVIOUS (docs/rotation.md) shows up here as another version.
            version_id, previous = _current_and_previous(props)
            return {**props, "version_id": version_id, "previous_version_id": previous}

        return dynamic.ReadResult(id_, _readable("master password rotation", current))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # The database keeps its password and the secret its versions: removing this resource
        # only stops further rotations.
        pulumi.log.info("master password rotation: removed from the stack; password unchanged")

    @staticmethod
    def _rotate(props: Mapping[str, Any]) -> dict[str, Any]:
        result = rotate_master(_master_request(props))
        return _master_outputs(props, result.version_id, result.previous_version_id)


class MasterPasswordRotation(dynamic.Resource, module="appdb", name="MasterPasswordRotation"):
    """The master password at the value of `new_password`, rotated with Secrets Manager's protocol.

    Inputs: secret_arn, region, host, port, rotation, new_password (pass it as a Pulumi secret),
    ca_bundle, connect_deadline_seconds, test_deadline_seconds. Outputs: the inputs except the
    password, `version_id` (AWSCURRENT), `previous_version_id` (AWSPREVIOUS, the rollback
    target) and `rotation_token` (a one-way fingerprint `diff` compares).
    """

    version_id: pulumi.Output[str]
    previous_version_id: pulumi.Output[str]
    rotation_token: pulumi.Output[str]

    def __init__(
        self, name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        # Belt and braces: should a password ever be echoed, it is stored encrypted.
        secret_outputs = pulumi.ResourceOptions(additional_secret_outputs=["new_password"])
        super().__init__(
            MasterPasswordRotationProvider(),
            name,
            {**props, "version_id": None, "previous_version_id": None, "rotation_token": None},
            pulumi.ResourceOptions.merge(opts, secret_outputs),
        )


# --- application users --------------------------------------------------------------------

USERS_INPUTS = (
    "master_secret_arn",
    "region",
    "schema",
    "rotation",
    "roles",
    "privileges",
    "account_prefix",
    "ca_bundle",
    "connect_deadline_seconds",
    "test_deadline_seconds",
)
USERS_DEFAULTS: dict[str, Any] = {
    "account_prefix": "",
    "ca_bundle": None,
    "connect_deadline_seconds": 600,
    "test_deadline_seconds": 60,
}


def _users_request(props: Mapping[str, Any]) -> ApplicationUsersRequest:
    roles = {
        role: RoleEndpoint(str(spec["secret_arn"]), str(spec["host"]), int(spec["port"]))
        for role, spec in dict(props["roles"]).items()
    }
    return ApplicationUsersRequest(
        master_secret_arn=str(props["master_secret_arn"]),
        schema=str(props["schema"]),
        roles=roles,
        rotation=str(props["rotation"]),
        privileges={r: [str(p) for p in ps] for r, ps in dict(props["privileges"]).items()},
        region=str(props["region"]),
        ca_bundle=ca_bundle_path(props.get("ca_bundle")),
        connect_deadline=float(props.get("connect_deadline_seconds") or 600),
        test_deadline=float(props.get("test_deadline_seconds") or 60),
        account_prefix=str(props.get("account_prefix") or ""),
    )


def _users_outputs(props: Mapping[str, Any], states: Mapping[str, RoleState]) -> dict[str, Any]:
    return {
        **echoed_inputs(props, USERS_INPUTS, USERS_DEFAULTS),
        "active_users": {role: s.active_user for role, s in states.items()},
        "version_ids": {role: s.version_id for role, s in states.items()},
        "grants": {user: lines for s in states.values() for user, lines in s.grants.items()},
    }


def grant_drift(props: Mapping[str, Any], observed: Mapping[str, Any] | None) -> list[str]:
    """Accounts whose observed grants (last apply or refresh) differ from the declared ones."""
    privileges = props.get("privileges")
    if not isinstance(observed, Mapping) or not isinstance(privileges, Mapping):
        return []
    prefix = str(props.get("account_prefix") or "")
    drifted = []
    for role, declared in privileges.items():
        wanted = desired_grants(str(props["schema"]), [str(p) for p in declared]).describe()
        for user, lines in observed.items():
            if lines is None or not user.startswith(f"{prefix}{role}_"):
                continue  # not created yet, or another role's account
            if list(lines) != wanted:
                drifted.append(user)
    return sorted(drifted)


class ApplicationUsersProvider(dynamic.ResourceProvider):
    """Application accounts, grants and secrets (rotation.app_users). Holds no state."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        failures = required_string_failures(
            news, ("master_secret_arn", "region", "schema", "rotation")
        )
        roles, privileges = news.get("roles"), news.get("privileges")
        if isinstance(roles, Mapping) and isinstance(privileges, Mapping):
            for role in roles:
                if role not in privileges:
                    failures.append(
                        dynamic.CheckFailure(
                            "roles", f"role {role!r} has no declared privileges (see `privileges`)"
                        )
                    )
        elif roles != UNKNOWN:
            failures.append(dynamic.CheckFailure("roles", "must map role -> secret_arn/host/port"))
        return dynamic.CheckResult({**USERS_DEFAULTS, **news}, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # No connection here (preview). Grant drift is what the last apply or refresh saw.
        changed = changed_keys(olds, news, USERS_INPUTS)
        if not changed and grant_drift(news, olds.get("grants")):
            changed.append("grants")
        return dynamic.DiffResult(changes=bool(changed), replaces=[], stables=[])

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        outs = _readable("application users", lambda: self._apply(props))
        return dynamic.CreateResult(id_=f"{props['schema']}-application-users", outs=outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=_readable("application users", lambda: self._apply(news)))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        def observed() -> dict[str, Any]:
            return _users_outputs(props, read_application_users(_users_request(props)))

        return dynamic.ReadResult(id_, _readable("application users", observed))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # Dropping accounts would cut off running applications: removing the resource from the
        # program leaves them (and their secrets' values) as they are.
        pulumi.log.info(
            f"application users: leaving the accounts of {sorted(props.get('roles') or {})} "
            "in place"
        )

    @staticmethod
    def _apply(props: Mapping[str, Any]) -> dict[str, Any]:
        return _users_outputs(props, apply_application_users(_users_request(props)))


class ApplicationUsers(dynamic.Resource, module="appdb", name="ApplicationUsers"):
    """The `app`/`readonly` accounts with their declared grants and secrets.

    Inputs: master_secret_arn, region, schema, rotation, roles (role -> {secret_arn, host,
    port}), privileges (role -> list), account_prefix, ca_bundle, connect_deadline_seconds,
    test_deadline_seconds. Outputs: the inputs, `active_users` (role -> account the secret
    names), `version_ids` (role -> AWSCURRENT version) and `grants` (account -> grant lines).
    """

    active_users: pulumi.Output[dict[str, str]]
    version_ids: pulumi.Output[dict[str, str]]
    grants: pulumi.Output[dict[str, list[str]]]

    def __init__(
        self, name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            ApplicationUsersProvider(),
            name,
            {**props, "active_users": None, "version_ids": None, "grants": None},
            opts,
        )
