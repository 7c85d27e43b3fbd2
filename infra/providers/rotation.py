"""Dynamic providers for credential rotation: thin adapters from Pulumi's lifecycle to `rotation`.

The work runs where the stack's runner is (`runner`: the in-VPC Lambda function, or without
one this process), through the same tasks (vpcrunner.tasks).

- `MasterPasswordRotation` rotates the master password with Secrets Manager's protocol
  (rotation.master) whenever `appdb:credentialsRotation` changes. The new password is
  generated where the rotation runs, as AWS's rotation functions do: it is never an input, an
  output, part of an invocation, or in state. Its first apply (`create`) records the password
  the instance was created with as this rotation value's, and rotates nothing.
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
from typing import Any, TypeVar

import pulumi
from pulumi import dynamic

from infra.providers.inputs import changed_keys, check_failures, parsed
from migrator.errors import MigrationError
from rotation.errors import RotationError
from rotation.grants import desired_grants
from vpcrunner.invoke import Runner, RunnerError, run_task
from vpcrunner.requests import ApplicationUsersRequest, MasterRotationRequest

T = TypeVar("T")


class CredentialRotationError(Exception):
    """The one readable, secret-free message `pulumi up` shows when a rotation step fails."""


def _readable(what: str, action: Callable[[], T]) -> T:
    # The tasks' errors (rotation's, and `migrator`'s secrets and connection errors) are
    # secret-free; they come back as the runner's one message.
    try:
        return action()
    except (RunnerError, RotationError, MigrationError) as error:
        raise CredentialRotationError(f"{what}: {error}") from None


def _defaults(request_type: type) -> dict[str, Any]:
    return {
        f.name: f.default
        for f in dataclasses.fields(request_type)
        if f.default is not dataclasses.MISSING
    }


def _no_password_inputs(news: Mapping[str, Any], allowed: tuple[str, ...] = ()) -> list:
    return [
        dynamic.CheckFailure(
            key, "no password may be an input: passwords are made and read where the work runs"
        )
        for key in news
        if "password" in key.lower() and key not in allowed
    ]


def _run(
    what: str,
    request: MasterRotationRequest | ApplicationUsersRequest,
    task: str,
) -> dict[str, Any]:
    answer = run_task(
        Runner(request.runner, request.region),
        task,
        request.as_inputs(),
        deadline_seconds=request.runner_deadline_seconds,
        report=pulumi.log.info,  # the provider's stderr, shown by `pulumi up` (migrations.py)
        label=what,
    )
    return dict(answer["result"])


# --- master password ----------------------------------------------------------------------

MASTER = "master password rotation"
MASTER_INPUTS = tuple(f.name for f in dataclasses.fields(MasterRotationRequest))
MASTER_DEFAULTS: dict[str, Any] = _defaults(MasterRotationRequest)


def _master_outputs(request: MasterRotationRequest, result: Mapping[str, Any]) -> dict[str, Any]:
    # Outputs hold ids and endpoints only.
    return {
        **request.as_inputs(),
        "version_id": result.get("version_id"),
        "previous_version_id": result.get("previous_version_id"),
    }


class MasterPasswordRotationProvider(dynamic.ResourceProvider):
    """Rotates the master password (rotation.master). Holds no state: see the module docstring."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        failures = _no_password_inputs(news, allowed=("password_length",))
        failures += check_failures(MasterRotationRequest.problems(news))
        return dynamic.CheckResult({**MASTER_DEFAULTS, **news}, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # No AWS or database call: this runs during preview. Never a replacement.
        changed = changed_keys(olds, news, MASTER_INPUTS, MASTER_DEFAULTS)
        return dynamic.DiffResult(changes=bool(changed), replaces=[], stables=[])

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        # The first apply: the instance and the secret's initial version hold the password the
        # instance was created with; it stands for this rotation value. Nothing is rotated.
        request = parsed(MasterRotationRequest, props, CredentialRotationError)
        result = _readable(MASTER, lambda: _run(MASTER, request, "master.read"))
        return dynamic.CreateResult(id_=request.secret_arn, outs=_master_outputs(request, result))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        request = parsed(MasterRotationRequest, news, CredentialRotationError)
        # A new rotation value rotates; anything else (a new endpoint, a setting) only
        # publishes the endpoint in the secret.
        rotate = changed_keys(olds, news, ("rotation",)) != []
        task = "master.rotate" if rotate else "master.endpoint"
        result = _readable(MASTER, lambda: _run(MASTER, request, task))
        return dynamic.UpdateResult(outs=_master_outputs(request, result))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        # A rollback to AWSPREVIOUS (docs/rotation.md) shows up here as another version.
        request = parsed(MasterRotationRequest, props, CredentialRotationError)
        result = _readable(MASTER, lambda: _run(MASTER, request, "master.read"))
        return dynamic.ReadResult(id_, _master_outputs(request, result))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # The database keeps its password and the secret its versions: removing this resource
        # only stops further rotations.
        pulumi.log.info("master password rotation: removed from the stack; password unchanged")


class MasterPasswordRotation(dynamic.Resource, module="appdb", name="MasterPasswordRotation"):
    """The master password rotated with Secrets Manager's protocol for each new `rotation`.

    Inputs: secret_arn, region, host, port, rotation, ca_bundle, connect_deadline_seconds,
    test_deadline_seconds, password_length, runner, runner_deadline_seconds. Outputs: the
    inputs, `version_id` (AWSCURRENT) and `previous_version_id` (AWSPREVIOUS, the rollback
    target). No password is an input or an output.
    """

    version_id: pulumi.Output[str]
    previous_version_id: pulumi.Output[str]

    def __init__(
        self, name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            MasterPasswordRotationProvider(),
            name,
            {**props, "version_id": None, "previous_version_id": None},
            opts,
        )


# --- application users --------------------------------------------------------------------

USERS = "application users"
USERS_INPUTS = tuple(f.name for f in dataclasses.fields(ApplicationUsersRequest))
USERS_DEFAULTS: dict[str, Any] = _defaults(ApplicationUsersRequest)


def _users_outputs(request: ApplicationUsersRequest, result: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **request.as_inputs(),
        "active_users": result["active_users"],
        "version_ids": result["version_ids"],
        "grants": result["grants"],
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
        failures = _no_password_inputs(news)
        failures += check_failures(ApplicationUsersRequest.problems(news))
        return dynamic.CheckResult({**USERS_DEFAULTS, **news}, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # No connection here (preview). Grant drift is what the last apply or refresh saw.
        changed = changed_keys(olds, news, USERS_INPUTS, USERS_DEFAULTS)
        if not changed and grant_drift(news, olds.get("grants")):
            changed.append("grants")
        return dynamic.DiffResult(changes=bool(changed), replaces=[], stables=[])

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        request = parsed(ApplicationUsersRequest, props, CredentialRotationError)
        outs = _users_outputs(
            request, _readable(USERS, lambda: _run(USERS, request, "users.apply"))
        )
        return dynamic.CreateResult(id_=f"{request.schema}-application-users", outs=outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        request = parsed(ApplicationUsersRequest, news, CredentialRotationError)
        result = _readable(USERS, lambda: _run(USERS, request, "users.apply"))
        return dynamic.UpdateResult(outs=_users_outputs(request, result))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        request = parsed(ApplicationUsersRequest, props, CredentialRotationError)
        result = _readable(USERS, lambda: _run(USERS, request, "users.read"))
        return dynamic.ReadResult(id_, _users_outputs(request, result))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # Dropping accounts would cut off running applications: removing the resource from the
        # program leaves them (and their secrets' values) as they are.
        pulumi.log.info(
            f"application users: leaving the accounts of {sorted(props.get('roles') or {})} "
            "in place"
        )


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
