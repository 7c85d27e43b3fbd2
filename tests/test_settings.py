"""Settings: one typed object from config, every bad value reported together with its key, the
value and what is allowed. Runs parse_settings on the real config (Pulumi.yaml defaults plus the
stack file, as the planner loads it) with one or more values replaced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.settings import (
    Settings,
    SettingsError,
    parse_settings,
    project_schema,
)
from planner import load_stack_config, run_plan
from planner.config import engine_value

ROOT = Path(__file__).resolve().parent.parent


def raw_config(stack: str, **changes: Any) -> tuple[dict[str, str], str | None]:
    """The stack's config as the program receives it (strings, no namespace), with changes."""
    values = load_stack_config(ROOT, stack)
    raw = {k.split(":", 1)[1]: engine_value(v) for k, v in values.items() if k.startswith("appdb:")}
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = engine_value(value)
    region = values.get("aws:region")
    return raw, str(region) if region else None


def parse(stack: str = "staging", **changes: Any) -> Settings:
    raw, region = raw_config(stack, **changes)
    return parse_settings(raw, environment=stack, region=region)


def problems(stack: str = "staging", **changes: Any) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        parse(stack, **changes)
    return caught.value.problems


def test_real_stacks_parse_into_typed_settings():
    staging, production = parse("staging"), parse("production")
    assert (staging.environment, staging.region, staging.project) == (
        "staging",
        "us-east-1",
        "appdb",
    )
    assert staging.availability_zone_count == 2 and production.availability_zone_count == 3
    assert staging.read_replica_count == 0 and production.read_replica_count == 2
    assert staging.multi_az is False and production.multi_az is True
    assert staging.backup_retention_days == 7 and production.backup_retention_days == 30
    assert staging.deletion_protection is False and production.deletion_protection is True
    assert production.port == 3407 and staging.port == 3306
    assert production.replica_instance_class == production.instance_class == "db.r6g.large"
    assert staging.master_username == "appdb_master"
    assert staging.database_name == "appdb"
    assert staging.credentials_rotation == "initial"
    assert staging.migrations.location == "schema"
    assert staging.migrations.snapshot_before_migrate is False
    assert production.migrations.snapshot_before_migrate is True
    assert staging.migrations.lock_wait_seconds == 60
    assert staging.migrations.statement_lock_wait_seconds == 10
    assert staging.migrations.connect_deadline_seconds == 600
    assert staging.migrations.ca_bundle_path == "certs/rds-global-bundle.pem"
    assert staging.migrations.out_of_order is False


# Each bad value from the issue: (key, value, words the message must contain).
BAD_VALUES = [
    ("instanceClass", "t3.micro", "RDS instance class"),
    ("instanceClass", "db.t3", "RDS instance class"),
    ("readReplicaCount", -1, "from 0 to 5"),
    ("readReplicaCount", 6, "from 0 to 5"),
    ("backupRetentionDays", -1, "from 0 to 35"),
    ("backupRetentionDays", 36, "from 0 to 35"),
    ("availabilityZoneCount", 1, "from 2 to 6"),
    ("masterPasswordLength", 15, "from 16 to 41"),
    ("engineVersion", "8.4.3", "a major version: '8.0' or '8.4'"),
    ("engineVersion", "9.1", "a major version: '8.0' or '8.4'"),
]


@pytest.mark.parametrize(("key", "value", "allowed"), BAD_VALUES)
def test_each_bad_value_names_key_value_and_what_is_allowed(key, value, allowed):
    (problem,) = problems(**{key: value})
    assert problem.startswith(f"appdb:{key} = ")
    assert str(value) in problem
    assert allowed in problem


def test_allocated_storage_above_max_allocated_is_rejected():
    (problem,) = problems(allocatedStorage=200, maxAllocatedStorage=100)
    assert (
        problem == "appdb:allocatedStorage = '200': must not exceed appdb:maxAllocatedStorage (100)"
    )


def test_the_parameter_group_family_follows_the_engine_version():
    settings = parse(engineVersion="8.0")
    assert (settings.major_engine_version, settings.parameter_group_family) == ("8.0", "mysql8.0")
    assert parse().parameter_group_family == "mysql8.4"
    assert parse("production", engineVersion="8.0", replicaEngineVersion="8.4").replica_family == (
        "mysql8.4"
    )


def test_unknown_keys_are_refused_with_a_did_you_mean_and_retired_ones_explained():
    found = problems("production", readReplicaCnt=2, instanceClas="db.r6g.large", zzz=1)
    assert found == [
        "appdb:instanceClas is not a setting of this project (did you mean appdb:instanceClass?); "
        "the settings are declared in Pulumi.yaml",
        "appdb:readReplicaCnt is not a setting of this project (did you mean "
        "appdb:readReplicaCount?); the settings are declared in Pulumi.yaml",
        "appdb:zzz is not a setting of this project; the settings are declared in Pulumi.yaml",
    ]
    (retired,) = problems(parameterGroupFamily="mysql8.0")
    assert retired.startswith("appdb:parameterGroupFamily is no longer a setting")
    assert "follows appdb:engineVersion" in retired


def test_a_region_that_is_not_a_region_is_refused_with_a_did_you_mean():
    raw, _ = raw_config("staging")
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw, environment="staging", region="us-east1")
    (problem,) = caught.value.problems
    assert problem.startswith("aws:region = 'us-east1': not an AWS region")
    assert "did you mean us-east-1?" in problem
    assert parse_settings(raw, environment="staging", region="eu-central-1").region == (
        "eu-central-1"
    )


def test_all_problems_are_reported_together():
    found = problems(
        instanceClass="large",
        readReplicaCount=9,
        allocatedStorage=500,
        backupRetentionDays=99,
        availabilityZoneCount=1,
        masterPasswordLength=8,
        engineVersion="8.0.40",
        readReplicaCnt=1,
    )
    keys = [p.split(" ", 1)[0] for p in found]
    assert keys == [
        "appdb:readReplicaCnt",
        "appdb:availabilityZoneCount",
        "appdb:masterPasswordLength",
        "appdb:engineVersion",
        "appdb:instanceClass",
        "appdb:readReplicaCount",
        "appdb:allocatedStorage",
        "appdb:backupRetentionDays",
    ]
    message = str(SettingsError("staging", found))
    assert "8 problems" in message and "nothing was declared" in message


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("masterUsername", "admin", "RDS.25"),
        ("masterUsername", "a-name-with-dashes", "letters, digits or underscores"),
        ("port", 80, "from 1150 to 65535"),
        ("multiAz", "yes", "must be true or false"),
        ("readReplicaCount", "two", "from 0 to 5"),
        ("logRetentionDays", 10, "must be one of 1, 3, 5, 7, 14"),
        ("performanceInsightsRetentionDays", 8, "must be one of 7, 31, 62"),
        ("monitoringIntervalSeconds", 0, "must be one of 1, 5, 10, 15, 30, 60"),
        ("secretRecoveryWindowDays", 3, "0 (delete at once) or from 7 to 30"),
        ("kmsDeletionWindowDays", 60, "from 7 to 30"),
        ("vpcCidr", "10.0.0.0/8", "/16 to /24"),
        ("backupWindow", "3am", "hh:mm-hh:mm"),
        ("maintenanceWindow", "sunday", "ddd:hh:mm-ddd:hh:mm"),
        ("engineVersion", "8.0.40", "RDS owns the minor version"),
        ("replicaEngineVersion", "8.1", "a major version"),
        ("migrationSnapshotRetention", 0, "from 1 to 100"),
        ("instanceClass", "db.t4g.micro", "Performance Insights"),
        ("existingVpcId", "my-vpc", "vpc-0123456789abcdef0"),
        ("migrationsLocation", "/abs/path", "relative to the project"),
        ("credentialsRotation", "has space", "letters, digits"),
    ],
)
def test_other_bad_values_are_explained(key, value, allowed):
    found = problems(**{key: value})
    assert any(p.startswith(f"appdb:{key} = ") and allowed in p for p in found), found


def test_replicas_need_automated_backups_on_the_source():
    (problem,) = problems("production", backupRetentionDays=0)
    assert problem.startswith("appdb:backupRetentionDays = '0': must be at least 1")


def test_existing_vpc_needs_two_subnets_and_subnets_need_the_vpc():
    (problem,) = problems(existingVpcId="vpc-0123456789abcdef0")
    assert problem.startswith("appdb:existingSubnetIds = []") and "at least 2" in problem
    (problem,) = problems(existingSubnetIds=["subnet-0123abcd", "subnet-4567ef01"])
    assert "only allowed together with appdb:existingVpcId" in problem
    settings = parse(
        existingVpcId="vpc-0123456789abcdef0",
        existingSubnetIds=["subnet-0123abcd", "subnet-4567ef01"],
    )
    assert not settings.creates_network
    assert settings.existing_subnet_ids == ("subnet-0123abcd", "subnet-4567ef01")


def test_parameter_overrides_merge_over_the_defaults():
    settings = parse(
        dbParameters={
            "long_query_time": 5,
            "max_connections": "500",
            "innodb_log_file_size": {"value": "1073741824"},
            "wait_timeout": {"value": 300, "applyMethod": "pending-reboot"},
        }
    )
    params = {p.name: (p.value, p.apply_method) for p in settings.db_parameters}
    assert params["long_query_time"] == ("5", "immediate")
    assert params["max_connections"] == ("500", "immediate")
    assert params["innodb_log_file_size"] == ("1073741824", "pending-reboot")  # static
    assert params["wait_timeout"] == ("300", "pending-reboot")
    assert params["slow_query_log"] == ("1", "immediate")
    assert params["innodb_buffer_pool_size"][1] == "pending-reboot"


@pytest.mark.parametrize(
    ("overrides", "allowed"),
    [
        ({"require_secure_transport": "0"}, "must stay 1"),
        ({"Bad Name": "1"}, "parameter names"),
        ({"wait_timeout": {"value": 1, "applyMethod": "later"}}, "applyMethod"),
        ({"wait_timeout": [1, 2]}, "string or a number"),
        (["not", "an", "object"], "must be an object"),
    ],
)
def test_bad_parameter_overrides_are_explained(overrides, allowed):
    (problem,) = problems(dbParameters=overrides)
    assert problem.startswith("appdb:dbParameters") and allowed in problem


def test_missing_key_and_missing_region_are_reported():
    raw, _ = raw_config("staging", port=None)
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw, environment="staging", region=None)
    assert caught.value.problems == [
        "aws:region is not set: name the AWS region in the stack file",
        "appdb:port is not set: Pulumi.yaml declares its default, so run the program through "
        "the Pulumi CLI or scripts/plan",
    ]


def test_secret_values_are_not_echoed():
    raw, region = raw_config("staging", port="not-a-port")
    with pytest.raises(SettingsError) as caught:
        parse_settings(
            raw, environment="staging", region=region, secret_keys=frozenset({"appdb:port"})
        )
    assert caught.value.problems == ["appdb:port = [secret]: must be an integer from 1150 to 65535"]
    assert "not-a-port" not in str(caught.value)


def test_bad_stack_name_is_reported():
    raw, region = raw_config("staging")
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw, environment="Prod_1", region=region)
    assert "stack name 'Prod_1'" in caught.value.problems[0]


def test_pulumi_yaml_declares_every_key_with_its_type_default_and_description():
    document = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    declared = document["config"]
    types = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict}
    project_keys = [k for k in declared if ":" not in k]
    assert project_keys == list(project_schema())
    for key in project_keys:
        spec = declared[key]
        assert set(spec) - {"items"} == {"type", "default", "description"}, key
        assert isinstance(spec["default"], types[spec["type"]]), key
        assert spec["description"].strip(), key
    # The structured keys carry their own types (object/array, Pulumi CLI 3.187+): nothing is
    # documented only in prose any more.
    assert declared["dbParameters"]["type"] == "object"
    assert declared["existingSubnetIds"] == {
        "type": "array",
        "items": {"type": "string"},
        "default": [],
        "description": declared["existingSubnetIds"]["description"],
    }
    # The CLI version the project needs, where Pulumi lets a project declare it.
    assert document["requiredPulumiVersion"] == ">=3.187.0"


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_stack_files_only_use_declared_keys(stack):
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    known = {f"appdb:{k}" for k in project_schema()}
    known |= {"aws:region", "pulumi:disable-default-providers"}
    assert set(config) <= known
    assert config["aws:region"]
    # Only what differs: no stack value repeats the project default.
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    repeated = [
        key for key, value in config.items()
        if key.startswith("appdb:") and declared.get(key[6:], {}).get("default") == value
    ]  # fmt: skip
    assert repeated == []


def test_invalid_config_declares_nothing():
    """Settings are validated before any AWS resource is declared: only the stack's tagged
    provider exists by then (the preview-time checks of the region go through it)."""
    from planner import PlanError

    with pytest.raises(PlanError) as caught:
        run_plan(ROOT, "staging", overrides={"readReplicaCount": 7, "masterPasswordLength": 12})
    assert caught.value.error_type == "SettingsError"
    assert "appdb:readReplicaCount = '7'" in str(caught.value)
    assert "appdb:masterPasswordLength = '12'" in str(caught.value)
    assert [r.type for r in caught.value.declared] == ["pulumi:providers:aws"]


def test_readme_lists_every_config_key():
    text = (ROOT / "README.md").read_text()
    missing = [k for k in project_schema() if f"`appdb:{k}`" not in text]
    assert missing == []


def test_replicas_may_have_their_own_instance_class():
    assert parse("production", replicaInstanceClass="db.r6g.xlarge").replica_instance_class == (
        "db.r6g.xlarge"
    )
    assert parse("production").replica_instance_class == "db.r6g.large"  # empty: the primary's


def test_the_language_hosts_config_bag_is_read_too(monkeypatch):
    """Under the real CLI a Python program gets its config as the PULUMI_CONFIG bag (older
    engines spell keys "ns:config:key"): every `appdb:` key in it is seen, unknown ones too."""
    import json as json_module

    from infra.settings import _stack_config

    monkeypatch.setenv(
        "PULUMI_CONFIG",
        json_module.dumps({"appdb:config:readReplicaCnt": "2", "aws:region": "us-east-1"}),
    )
    assert _stack_config() == {"appdb:readReplicaCnt": "2", "aws:region": "us-east-1"}
