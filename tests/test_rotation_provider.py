"""The rotation dynamic providers, called as Pulumi's provider host calls them, against the
real rotation code, a real MariaDB and moto; and serialised as the SDK serialises them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from pulumi.dynamic.dynamic import serialize_provider
from rotation_support import can_login, master_account, value
from support_aws import create_secret, grpc_struct, provider_host, run_in_fresh_interpreter

import rotation.master
from infra.providers.rotation import (
    ApplicationUsersProvider,
    CredentialRotationError,
    MasterPasswordRotationProvider,
)
from rotation.grants import ROLE_PRIVILEGES, schema_target
from standins.mariadb import MariaDBServer
from vpcrunner.requests import UNKNOWN

PASSWORD_1 = "Rotated-Master.Password~number+1"
PASSWORD_2 = "Rotated-Master.Password~number+2"


@pytest.fixture
def master(mariadb: MariaDBServer, database: str, aws: str) -> dict[str, Any]:
    return master_account(mariadb, database)


@pytest.fixture
def generated(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords the rotation will generate, in order (known here to test logins)."""
    queue = [PASSWORD_1, PASSWORD_2]
    monkeypatch.setattr(rotation.master, "generate_password", lambda _length: queue.pop(0))
    return queue


def master_props(mariadb: MariaDBServer, master: dict, rotation_value: str) -> dict:
    checked = MasterPasswordRotationProvider().check(
        {},
        {
            "secret_arn": master["arn"],
            "region": "us-east-1",
            "host": mariadb.host,
            "port": mariadb.port,
            "rotation": rotation_value,
            "ca_bundle": str(mariadb.ca_path),
            "connect_deadline_seconds": 5,
            "test_deadline_seconds": 1,
        },
    )
    assert not checked.failures
    return checked.inputs


def test_master_provider_rotates_on_a_new_value_only(mariadb, master, generated):
    provider = MasterPasswordRotationProvider()
    first = master_props(mariadb, master, "2026-01")
    created = provider.create(first)
    outs = dict(created.outs or {})
    # The first apply adopts the password the instance was created with: nothing rotates.
    assert value(master["arn"])["password"] == master["password"]
    assert outs["version_id"] and generated == [PASSWORD_1, PASSWORD_2]
    assert master["password"] not in json.dumps(outs)
    assert not [k for k in outs if "password" in k and k != "password_length"]

    # Same rotation value: no change.
    assert provider.diff(created.id, outs, first).changes is False
    # A new value: changes, and the update rotates to a password generated where it ran.
    second = master_props(mariadb, master, "2026-02")
    assert provider.diff(created.id, outs, second).changes is True
    assert provider.diff(created.id, outs, {**second, "rotation": UNKNOWN}).changes is True
    updated = dict(provider.update(created.id, outs, second).outs or {})
    assert updated["previous_version_id"] == outs["version_id"]
    assert value(master["arn"])["password"] == PASSWORD_1
    assert value(master["arn"], "AWSPREVIOUS")["password"] == master["password"]
    assert can_login(mariadb, master["user"], PASSWORD_1)
    assert not can_login(mariadb, master["user"], master["password"])
    assert provider.diff(created.id, updated, second).changes is False
    assert PASSWORD_1 not in json.dumps(updated)
    # A refresh reads both labels back and leaves nothing for the next preview to change.
    refreshed = dict(provider.read(created.id, updated).outs or {})
    assert refreshed["version_id"] == updated["version_id"]
    assert refreshed["previous_version_id"] == outs["version_id"]
    assert provider.diff(created.id, refreshed, second).changes is False
    # The same value again (a re-run): the staged rotation is found, nothing new generated.
    again = dict(provider.update(created.id, refreshed, second).outs or {})
    assert again["version_id"] == updated["version_id"] and generated == [PASSWORD_2]


def test_no_password_may_be_an_input_of_the_master_rotation(mariadb, master):
    props = {**master_props(mariadb, master, "2026-01"), "new_password": "hunter2-password"}
    failures = MasterPasswordRotationProvider().check({}, props).failures
    assert [f.property for f in failures] == ["new_password"]
    assert "hunter2" not in json.dumps([f.reason for f in failures])


def test_master_provider_failure_is_one_readable_secret_free_message(mariadb, master, generated):
    provider = MasterPasswordRotationProvider()
    outs = dict(provider.create(master_props(mariadb, master, "2026-01")).outs or {})
    props = master_props(mariadb, master, "2026-02")
    root = mariadb.root_connection()
    with root.cursor() as cur:
        cur.execute(f"ALTER USER `{master['user']}`@'%' WITH MAX_USER_CONNECTIONS 1")
    try:
        with pytest.raises(CredentialRotationError) as failure:
            provider.update("id", outs, props)
    finally:
        with root.cursor() as cur:
            cur.execute(f"ALTER USER `{master['user']}`@'%' WITH MAX_USER_CONNECTIONS 0")
        root.close()
    message = str(failure.value)
    assert message.startswith("master password rotation: master rotation of")
    assert PASSWORD_1 not in message and master["password"] not in message
    assert failure.value.__cause__ is None and failure.value.__suppress_context__
    assert can_login(mariadb, master["user"], master["password"])
    assert value(master["arn"])["password"] == master["password"]  # nothing promoted
    provider.update("id", outs, props)  # re-run after the cause is fixed completes
    assert can_login(mariadb, master["user"], PASSWORD_1)  # the staged password, not a new one


def test_users_provider_engine_errors_are_one_readable_message(mariadb, master):
    # The master secret is read with the migration engine's reader: its SecretError (and the
    # engine's ConnectionFailed) must surface like rotation's own errors, not as a traceback.
    master["app"], master["readonly"] = create_secret(), create_secret()
    provider = ApplicationUsersProvider()
    props = {
        **users_props(mariadb, master, "2026-01", "gone_"),
        "master_secret_arn": master["arn"] + "-deleted",
    }
    with pytest.raises(CredentialRotationError) as failure:
        provider.create(props)
    message = str(failure.value)
    assert message.startswith("application users: secret ") and "not found" in message
    assert master["password"] not in message
    assert failure.value.__cause__ is None and failure.value.__suppress_context__


def test_master_provider_publishes_a_new_endpoint_without_rotating(mariadb, master):
    provider = MasterPasswordRotationProvider()
    props = master_props(mariadb, master, "2026-01")
    outs = dict(provider.create(props).outs or {})
    moved = {**props, "host": "localhost"}  # e.g. the instance was restored under a new name
    assert provider.diff("id", outs, moved).changes is True
    updated = dict(provider.update("id", outs, moved).outs or {})
    assert value(master["arn"])["host"] == "localhost"
    assert value(master["arn"])["password"] == master["password"]  # same password, new version
    assert updated["version_id"] != outs["version_id"]
    assert provider.diff("id", updated, moved).changes is False


def users_props(mariadb: MariaDBServer, master: dict, rotation: str, prefix: str) -> dict:
    checked = ApplicationUsersProvider().check(
        {},
        {
            "master_secret_arn": master["arn"],
            "region": "us-east-1",
            "schema": master["database"],
            "rotation": rotation,
            "roles": {
                "app": {"secret_arn": master["app"], "host": mariadb.host, "port": mariadb.port},
                "readonly": {
                    "secret_arn": master["readonly"],
                    "host": "localhost",
                    "port": mariadb.port,
                },
            },
            "privileges": {role: list(p) for role, p in ROLE_PRIVILEGES.items()},
            "account_prefix": prefix,
            "ca_bundle": str(mariadb.ca_path),
            "connect_deadline_seconds": 5,
            "test_deadline_seconds": 1,
        },
    )
    assert not checked.failures
    return checked.inputs


def test_application_users_provider_lifecycle_with_drift_repair(mariadb, master):
    master["app"], master["readonly"] = create_secret(), create_secret()
    prefix = "prov_"
    provider = ApplicationUsersProvider()
    props = users_props(mariadb, master, "r1", prefix)
    created = provider.create(props)
    outs = dict(created.outs or {})
    assert outs["active_users"] == {"app": "prov_app_a", "readonly": "prov_readonly_a"}
    app_password = value(master["app"])["password"]
    assert app_password not in json.dumps(outs)  # never in outputs/state
    assert provider.diff(created.id, outs, props).changes is False

    # A grant revoked by hand: refresh (read) sees it, diff reports it, update repairs it.
    target = schema_target(master["database"])
    root = mariadb.root_connection()
    with root.cursor() as cur:
        cur.execute(f"REVOKE INSERT ON {target} FROM prov_app_a")
    refreshed = dict(provider.read(created.id, outs).outs or {})
    assert f"INSERT ON {target}" not in refreshed["grants"]["prov_app_a"]
    assert provider.diff(created.id, refreshed, props).changes is True
    repaired = dict(provider.update(created.id, refreshed, props).outs or {})
    assert f"INSERT ON {target}" in repaired["grants"]["prov_app_a"]
    assert repaired["version_ids"] == outs["version_ids"]  # not rotated
    assert provider.diff(created.id, repaired, props).changes is False

    # A new rotation value flips both roles to their b accounts.
    rotated_props = users_props(mariadb, master, "r2", prefix)
    assert provider.diff(created.id, repaired, rotated_props).changes is True
    rotated = dict(provider.update(created.id, repaired, rotated_props).outs or {})
    assert rotated["active_users"] == {"app": "prov_app_b", "readonly": "prov_readonly_b"}
    with root.cursor() as cur:
        # Leave no accounts behind on the shared server.
        for user in ("app_a", "app_b", "readonly_a", "readonly_b"):
            cur.execute(f"DROP USER IF EXISTS prov_{user}")
    root.close()


@pytest.mark.parametrize(
    "provider_class", [MasterPasswordRotationProvider, ApplicationUsersProvider]
)
def test_providers_serialise_by_reference_and_load_in_a_fresh_interpreter(provider_class):
    serialized = serialize_provider(provider_class())  # what the SDK stores in `__provider`
    raw = base64.b64decode(serialized)
    assert b"infra.providers.rotation" in raw and provider_class.__name__.encode() in raw
    for leaked in (b"boto", b"pymysql", b"Connection", b"secretsmanager", b"password"):
        assert leaked not in raw, f"{leaked!r} captured in the serialised provider"
    script = (
        "import base64, json, sys, dill\n"
        "provider = dill.loads(base64.b64decode(sys.stdin.read()))\n"
        "print(json.dumps({'type': type(provider).__module__ + '.' + type(provider).__name__,\n"
        "  'attrs': sorted(vars(provider))}))\n"
    )
    completed = run_in_fresh_interpreter(script, serialized)
    assert completed.returncode == 0, completed.stderr
    loaded = json.loads(completed.stdout)
    assert loaded == {"type": f"infra.providers.rotation.{provider_class.__name__}", "attrs": []}


def test_pulumis_provider_host_runs_both_providers(mariadb, master):
    """What `pulumi up` does: the engine starts the Python provider host in the project directory
    and sends the serialised provider with each request, over gRPC (numbers arrive as floats,
    secrets unwrapped)."""
    from pulumi.runtime import proto, rpc

    master_inputs = {
        **master_props(mariadb, master, "2026-01"),
        "__provider": serialize_provider(MasterPasswordRotationProvider()),
    }
    master["app"], master["readonly"] = create_secret(), create_secret()
    users_inputs = {
        **users_props(mariadb, master, "r1", "grpc_"),
        "__provider": serialize_provider(ApplicationUsersProvider()),
    }
    dynamic = "urn:pulumi:staging::appdb::pulumi-python:dynamic/appdb"
    try:
        with provider_host() as stub:
            urn = f"{dynamic}:MasterPasswordRotation::master-rotation-rotated"
            created = stub.Create(
                proto.CreateRequest(urn=urn, properties=grpc_struct(master_inputs))
            )
            outs = rpc.deserialize_properties(created.properties)
            assert master["password"] not in json.dumps(outs)
            assert value(master["arn"])["password"] == master["password"]  # adopted
            same = stub.Diff(
                proto.DiffRequest(
                    id=created.id, urn=urn, olds=grpc_struct(outs), news=grpc_struct(master_inputs)
                )
            )
            assert same.changes == proto.DiffResponse.DIFF_NONE
            rotated = {**master_inputs, "rotation": "2026-02"}
            some = stub.Diff(
                proto.DiffRequest(
                    id=created.id, urn=urn, olds=grpc_struct(outs), news=grpc_struct(rotated)
                )
            )
            assert some.changes == proto.DiffResponse.DIFF_SOME and list(some.replaces) == []

            urn = f"{dynamic}:ApplicationUsers::application-users-accounts"
            created = stub.Create(
                proto.CreateRequest(urn=urn, properties=grpc_struct(users_inputs))
            )
            outs = rpc.deserialize_properties(created.properties)
            assert outs["active_users"] == {"app": "grpc_app_a", "readonly": "grpc_readonly_a"}
            assert value(master["app"])["password"] not in json.dumps(outs)
    finally:
        root = mariadb.root_connection()
        with root.cursor() as cur:
            cur.execute("DROP USER IF EXISTS grpc_app_a, grpc_readonly_a")
        root.close()
