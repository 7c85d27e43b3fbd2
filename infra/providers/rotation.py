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

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pulumi
from pulumi import dynamic

from infra.providers.inputs import UNKNOWN, changed_keys, check_failures, parsed
from migrator.errors import MigrationError
from rotation.app_users import ApplicationUsers as UsersRotation
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
from vpcrunner.requests import ApplicationUsersRequest, MasterRotationRequest, resolve

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


def _defaults(request_type: type) -> dict[str, Any]:
    return {
        f.name: f.default
        for f in dataclasses.fields(request_type)
        if f.default is not dataclasses.MISSING
    }


def _ca_bundle(path: str | None) -> str | None:
    return str(resolve(Path.cwd(), path)) if path else None


# --- master password ----------------------------------------------------------------------

MASTER_INPUTS = tuple(f.name for f in dataclasses.fields(MasterRotationRequest))
MASTER_DEFAULTS: dict[str, Any] = _defaults(MasterRotationRequest)


def _new_password(props: Mapping[str, Any]) -> str:
    # A secret input, deliberately not a field of the request (which is echoed into state).
    password = props.get("new_password")
    if not isinstance(password, str) or not password:
        raise CredentialRotationError("master password rotation: new_password is empty")
    return password


def _master_rotation(request: MasterRotationRequest, new_password: str) -> MasterRotation:
    return MasterRotation(
        secret_arn=request.secret_arn,
        new_password=new_password,
        rotation=request.rotation,
        host=request.host,
        port=request.port,
        region=request.region,
        ca_bundle=_ca_bundle(request.ca_bundle),
        connect_deadline=float(request.connect_deadline_seconds),
        test_deadline=float(request.test_deadline_seconds),
    )


def master_rotation_token(props: Mapping[str, Any]) -> str:
    """A one-way fingerprint of (secret, rotation value, password): what `diff` compares.
    Computed from the raw inputs: during preview they are not parsed."""
    return derive_token(
        *token_parts(str(props["secret_arn"]), str(props["rotation"]), str(props["new_password"]))
    )


def _master_outputs(
    request: MasterRotationRequest, token: str, version_id: str, previous: str | None
) -> dict[str, Any]:
    # The password is deliberately not echoed: outputs hold ids and endpoints only.
    return {
        **request.as_inputs(),
        "rotation_token": token,
        "version_id": version_id,
        "previous_version_id": previous,
    }


def _current_and_previous(request: MasterRotationRequest) -> list[str | None]:
    """The master secret's AWSCURRENT and AWSPREVIOUS version ids (one describe call)."""
    store = SecretStore(request.region)
    return store.versions_with(request.secret_arn, CURRENT, PREVIOUS)


class MasterPasswordRotationProvider(dynamic.ResourceProvider):
    """Rotates the master password (rotation.master). Holds no state: see the module docstring."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        failures = check_failures(MasterRotationRequest.problems(news))
        password = news.get("new_password")
        if password != UNKNOWN and (not isinstance(password, str) or not password):
            failures.append(
                dynamic.CheckFailure(
                    "new_password", "required string, a non-empty string is required"
                )
            )
        return dynamic.CheckResult({**MASTER_DEFAULTS, **news}, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # No AWS or database call: this runs during preview. Never a replacement.
        changed = changed_keys(olds, news, MASTER_INPUTS)
        unknown = UNKNOWN in (news.get(k) for k in ("new_password", "secret_arn", "rotation"))
        if unknown or master_rotation_token(news) != olds.get("rotation_token"):
            changed.append("new_password")
        return dynamic.DiffResult(changes=bool(changed), replaces=[], stables=[])

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        request = parsed(MasterRotationRequest, props, CredentialRotationError)
        password = _new_password(props)
        outs = _readable("master password rotation", lambda: self._rotate(request, password))
        return dynamic.CreateResult(id_=request.secret_arn, outs=outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        request = parsed(MasterRotationRequest, news, CredentialRotationError)
        password = _new_password(news)
        token = master_rotation_token(news)

        def apply() -> dict[str, Any]:
            if token != olds.get("rotation_token"):
                return self._rotate(request, password)
            # Same rotation: only the endpoint (or a setting) changed. Publish the endpoint.
            update_endpoint(request.secret_arn, request.host, request.port, request.region)
            current, previous = _current_and_previous(request)
            return _master_outputs(request, token, str(current), previous)

        return dynamic.UpdateResult(outs=_readable("master password rotation", apply))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        request = parsed(MasterRotationRequest, props, CredentialRotationError)

        def current() -> dict[str, Any]:
            # A rollback to AWSPREVIOUS (docs/rotation.md) shows up here as another version.
            version_id, previous = _current_and_previous(request)
            return {**props, "version_id": version_id, "previous_version_id": previous}

        return dynamic.ReadResult(id_, _readable("master password rotation", current))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # The database keeps its password and the secret its versions: removing this resource
        # only stops further rotations.
        pulumi.log.info("master password rotation: removed from the stack; password unchanged")

    @staticmethod
    def _rotate(request: MasterRotationRequest, new_password: str) -> dict[str, Any]:
        result = rotate_master(_master_rotation(request, new_password))
        token = derive_token(*token_parts(request.secret_arn, request.rotation, new_password))
        return _master_outputs(request, token, result.version_id, result.previous_version_id)


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

USERS_INPUTS = tuple(f.name for f in dataclasses.fields(ApplicationUsersRequest))
USERS_DEFAULTS: dict[str, Any] = _defaults(ApplicationUsersRequest)


def _users_rotation(request: ApplicationUsersRequest) -> UsersRotation:
    return UsersRotation(
        master_secret_arn=request.master_secret_arn,
        schema=request.schema,
        roles={
            role: RoleEndpoint(target.secret_arn, target.host, target.port)
            for role, target in request.roles.items()
        },
        rotation=request.rotation,
        privileges={role: list(granted) for role, granted in request.privileges.items()},
        region=request.region,
        ca_bundle=_ca_bundle(request.ca_bundle),
        connect_deadline=float(request.connect_deadline_seconds),
        test_deadline=float(request.test_deadline_seconds),
        account_prefix=request.account_prefix,
    )


def _users_outputs(
    request: ApplicationUsersRequest, states: Mapping[str, RoleState]
) -> dict[str, Any]:
    return {
        **request.as_inputs(),
        "active_users": {role: s.active_user for role, s in states.items()},
        "version_ids": {role: s.version_id for role, s in states.items()},
        "grants": {user: lines for s in states.values() for user, lines in s.grants.items()},
    }


def grant_drift(props: Mapping[str, Any], observed: Mapping[str, Any] | None) -> list[str]:
    """Accounts whose observed grants (last apply or refresh) differ from the declared ones.
    Computed from the raw inputs: it runs during preview, where some may be unknown."""
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
        failures = check_failures(ApplicationUsersRequest.problems(news))
        return dynamic.CheckResult({**USERS_DEFAULTS, **news}, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # No connection here (preview). Grant drift is what the last apply or refresh saw.
        changed = changed_keys(olds, news, USERS_INPUTS)
        if not changed and grant_drift(news, olds.get("grants")):
            changed.append("grants")
        return dynamic.DiffResult(changes=bool(changed), replaces=[], stables=[])

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        request = parsed(ApplicationUsersRequest, props, CredentialRotationError)
        outs = _readable("application users", lambda: self._apply(request))
        return dynamic.CreateResult(id_=f"{request.schema}-application-users", outs=outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        request = parsed(ApplicationUsersRequest, news, CredentialRotationError)
        return dynamic.UpdateResult(
            outs=_readable("application users", lambda: self._apply(request))
        )

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        request = parsed(ApplicationUsersRequest, props, CredentialRotationError)

        def observed() -> dict[str, Any]:
            return _users_outputs(request, read_application_users(_users_rotation(request)))

        return dynamic.ReadResult(id_, _readable("application users", observed))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # Dropping accounts would cut off running applications: removing the resource from the
        # program leaves them (and their secrets' values) as they are.
        pulumi.log.info(
            f"application users: leaving the accounts of {sorted(props.get('roles') or {})} "
            "in place"
        )

    @staticmethod
    def _apply(request: ApplicationUsersRequest) -> dict[str, Any]:
        return _users_outputs(request, apply_application_users(_users_rotation(request)))


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
