"""Under the mock engine: changing `appdb:credentialsRotation` changes credential resources only.

The real program runs with the real production stack config (planner.run_plan) for two rotation
values and the declared resources are compared. (That the same value twice does nothing is the
providers' diff: tests/test_rotation_provider.py.)
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from planner import SECRET_PLACEHOLDER, Plan, run_plan

ROOT = Path(__file__).resolve().parent.parent
KEY = "appdb:credentialsRotation"
# What a rotation may touch: the master rotation resource and the application users' resource.
# Nothing else: not even the initial master password, which only the instance's creation uses
# (the rotated passwords are generated where the rotation runs).
CREDENTIAL_RESOURCES = {
    "master-rotation-rotated",
    "application-users-accounts",
}


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    runs = {"first": "2026-01", "second": "2026-02"}
    with ThreadPoolExecutor(max_workers=2) as pool:  # each plan is its own process
        futures = {
            label: pool.submit(run_plan, ROOT, "production", {KEY: value})
            for label, value in runs.items()
        }
        return {label: future.result() for label, future in futures.items()}


def by_urn(plan: Plan) -> dict[str, dict]:
    return {r.urn: {"inputs": r.inputs, "options": r.options} for r in plan.resources}


def test_a_new_rotation_value_changes_only_credential_resources(plans):
    before, after = by_urn(plans["first"]), by_urn(plans["second"])
    assert before.keys() == after.keys(), "a rotation must not add or remove resources"
    changed = {urn.rsplit("::", 1)[1] for urn in before if before[urn] != after[urn]}
    assert changed == CREDENTIAL_RESOURCES
    # The RDS instances (primary and replicas) are declared identically, so neither replaced
    # nor modified. The primary's password input is the initial password (a secret, so masked
    # here); the instance also ignores changes to it, so the real engine never sends one
    # through the RDS API: rotation applies the new password over SQL instead.
    instances = [r for r in plans["first"].resources if r.type == "aws:rds/instance:Instance"]
    assert len(instances) == 3
    for instance in instances:
        assert before[instance.urn] == after[instance.urn]
        if "password" in instance.inputs:
            assert instance.inputs["password"] == SECRET_PLACEHOLDER
            assert instance.options["ignore_changes"] == ["password"]
    # Likewise the secret's initial version, which only ever holds the first password.
    (initial,) = [
        r for r in plans["first"].resources if r.name == "credentials-master-secret-value"
    ]
    assert before[initial.urn] == after[initial.urn]
    assert "secretString" in initial.options["ignore_changes"]
    assert plans["first"].outputs == plans["second"].outputs


def test_rotation_resources_take_the_value_and_no_password(plans):
    resources = {r.name: r for r in plans["second"].resources}
    password = resources["credentials-master-password"]
    assert "keepers" not in password.inputs  # a new rotation value does not replace it
    assert not set(password.inputs["overrideSpecial"]) & set('/@" ')
    assert password.inputs["length"] >= 32
    master = resources["master-rotation-rotated"]
    assert master.inputs["rotation"] == "2026-02"
    # The new master password is generated where the rotation runs: never an input.
    assert [k for k in master.inputs if "password" in k] == ["password_length"]
    assert master.inputs["password_length"] == password.inputs["length"]
    assert resources["application-users-accounts"].inputs["rotation"] == "2026-02"
    assert "password" not in json.dumps(resources["application-users-accounts"].inputs)


def test_order_instance_then_migrations_then_master_rotation_then_app_users(plans):
    resources = {r.name: r for r in plans["first"].resources}
    primary, schema = resources["database-primary"].urn, resources["schema-applied"].urn
    master = resources["master-rotation-rotated"]
    assert {primary, schema} <= set(master.options["depends_on"])
    users = resources["application-users-accounts"]
    assert {schema, master.urn} <= set(users.options["depends_on"])
    # The instance keeps only its initial password; the initial secret version is written
    # once and never over a rotated value.
    assert resources["database-primary"].options["ignore_changes"] == ["password"]
    version = resources["credentials-master-secret-value"]
    assert version.inputs["versionStages"] == ["INITIAL"]
    assert set(version.options["ignore_changes"]) >= {"secretString", "versionStages"}


def test_role_secrets_are_encrypted_and_readonly_points_at_a_replica(plans):
    resources = {r.name: r for r in plans["first"].resources}
    key = next(r for r in plans["first"].resources if r.type == "aws:kms/key:Key")
    for role in ("app", "readonly"):
        secret = resources[f"application-users-{role}-secret"]
        assert secret.inputs["namePrefix"] == f"appdb/production/rds/{role}-"
        assert key.urn in secret.options["depends_on"]  # kmsKeyId is the environment's CMK
        assert secret.inputs["kmsKeyId"].startswith("arn:aws:kms:")
    roles = resources["application-users-accounts"].inputs["roles"]
    primary_id = resources["database-primary"].inputs["identifier"]
    assert roles["app"]["host"].startswith(f"{primary_id}.")
    assert roles["readonly"]["host"].startswith(f"{primary_id}-replica-1.")
