"""Issue 10: what an audit against AWS and Pulumi references found, one test per defect, each on the
real program and stack files under the mock engine (the mocks answer the region look-ups the way
AWS does: Local Zones included unless filtered, and a table of the classes RDS offers MySQL)."""

from __future__ import annotations

import pytest
from infra_plans import INSTANCE, ROOT, plan_of, primary, replicas

from planner import PlanError, run_plan

PARAMS = "aws:rds/parameterGroup:ParameterGroup"
OPTIONS = "aws:rds/optionGroup:OptionGroup"
SECRET = "aws:secretsmanager/secret:Secret"


def _group(plan, type_token: str, name_part: str):
    (found,) = [r for r in plan.of_type(type_token) if name_part in r.name]
    return found


# --- 1. MySQL 8.4 by default ----------------------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_1_both_stacks_run_mysql_84_with_84_groups(stack):
    plan = plan_of(stack)
    db = primary(plan)
    assert (db.inputs["engine"], db.inputs["engineVersion"]) == ("mysql", "8.4")
    params = _group(plan, PARAMS, "database-params")
    assert params.inputs["family"] == "mysql8.4"
    options = _group(plan, OPTIONS, "database-options")
    assert options.inputs["majorEngineVersion"] == "8.4"
    assert [o["optionName"] for o in options.inputs["options"]] == ["MARIADB_AUDIT_PLUGIN"]


# --- 2. RDS owns the minor version --------------------------------------------------------------


def test_2_a_full_version_is_refused_because_the_first_minor_upgrade_would_read_as_a_downgrade():
    with pytest.raises(PlanError) as caught:
        run_plan(ROOT, "staging", overrides={"engineVersion": "8.4.3"})
    message = str(caught.value)
    assert "appdb:engineVersion = '8.4.3'" in message and "'8.4'" in message


# --- 3. major upgrades -------------------------------------------------------------------------


def test_3_replicas_have_their_own_groups_and_instances_may_upgrade_majors():
    plan = plan_of("production")
    db = primary(plan)
    primary_params = _group(plan, PARAMS, "database-params")
    replica_params = _group(plan, PARAMS, "database-replica-params")
    replica_options = _group(plan, OPTIONS, "database-replica-options")
    assert db.inputs["parameterGroupName"].startswith(f"{primary_params.name}-")
    for replica in replicas(plan):
        assert replica.inputs["parameterGroupName"].startswith(f"{replica_params.name}-")
        assert replica.inputs["optionGroupName"].startswith(f"{replica_options.name}-")
        assert replica.inputs["engineVersion"] == "8.4"
    for instance in plan.of_type(INSTANCE):
        assert instance.inputs["allowMajorVersionUpgrade"] is True


def test_3_blue_green_only_where_there_are_no_replicas():
    # The provider's Blue/Green update cannot carry separately declared replicas along
    # (hashicorp/terraform-provider-aws#33702), so production upgrades in order instead.
    assert primary(plan_of("staging")).inputs["blueGreenUpdate"] == {"enabled": True}
    assert primary(plan_of("production")).inputs["blueGreenUpdate"] == {"enabled": False}


def test_3_ordered_upgrade_first_step_moves_only_the_replicas_to_84():
    plan = run_plan(
        ROOT, "production", overrides={"engineVersion": "8.0", "replicaEngineVersion": "8.4"}
    )
    assert primary(plan).inputs["engineVersion"] == "8.0"
    assert _group(plan, PARAMS, "database-params").inputs["family"] == "mysql8.0"
    assert _group(plan, PARAMS, "database-replica-params").inputs["family"] == "mysql8.4"
    assert {r.inputs["engineVersion"] for r in replicas(plan)} == {"8.4"}


def test_3_a_primary_ahead_of_its_replicas_is_refused():
    with pytest.raises(PlanError) as caught:
        run_plan(
            ROOT, "production", overrides={"engineVersion": "8.4", "replicaEngineVersion": "8.0"}
        )
    assert "appdb:replicaEngineVersion = '8.0'" in str(caught.value)
    assert "before their source" in str(caught.value)


# --- 4. regular availability zones only ---------------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_4_subnets_use_regular_zones_not_local_or_wavelength_zones(stack):
    zones = [s.inputs["availabilityZone"] for s in plan_of(stack).of_type("aws:ec2/subnet:Subnet")]
    assert zones == ["us-east-1a", "us-east-1b", "us-east-1c"][: len(zones)]


# --- 5. replica encryption parameters ---------------------------------------------------------


def test_5_same_region_replicas_send_no_kms_key_and_inherit_the_primarys():
    plan = plan_of("production")
    db = primary(plan)
    for replica in replicas(plan):
        assert "kmsKeyId" not in replica.inputs
        assert replica.inputs["replicateSourceDb"] == db.inputs["identifier"]
        assert replica.inputs["storageEncrypted"] is True


# --- 6. secret names unique per stack instance ----------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_6_secrets_get_a_generated_unique_name_and_their_names_are_exported(stack):
    plan = plan_of(stack)
    for secret in plan.of_type(SECRET):
        assert "name" not in secret.inputs, secret.name
        assert secret.inputs["namePrefix"].startswith(f"appdb/{stack}/rds/"), secret.name
    for output in ("secretName", "appSecretName", "readonlySecretName"):
        assert plan.outputs[output].startswith(f"appdb/{stack}/rds/"), output


# --- 7. migrations after the replicas ------------------------------------------------------------


def test_7_migrations_wait_for_every_replica_and_keep_n_snapshots():
    plan = plan_of("production")
    applied = plan.by_name("schema-applied")
    for replica in replicas(plan):
        assert replica.urn in applied.options["depends_on"], replica.name
    assert applied.inputs["snapshot_retention"] == 5


# --- 8. config that is silently wrong -----------------------------------------------------------


def test_8_a_misspelled_key_is_refused_with_a_did_you_mean():
    with pytest.raises(PlanError) as caught:
        run_plan(ROOT, "production", overrides={"readReplicaCnt": 2})
    assert caught.value.error_type == "SettingsError"
    assert "appdb:readReplicaCnt" in str(caught.value)
    assert "did you mean appdb:readReplicaCount?" in str(caught.value)


def test_8_zone_count_and_static_problems_come_in_one_report():
    with pytest.raises(PlanError) as caught:
        run_plan(
            ROOT,
            "production",
            overrides={"aws:region": "us-west-1", "masterPasswordLength": 8},
        )
    message = str(caught.value)
    assert "(2 problems)" in message
    assert "appdb:masterPasswordLength = '8'" in message
    assert "appdb:availabilityZoneCount = '3': the region offers only 2" in message


def test_8_a_class_rds_does_not_offer_for_mysql_is_refused_at_preview():
    with pytest.raises(PlanError) as caught:
        run_plan(ROOT, "production", overrides={"instanceClass": "db.x2iedn.xlarge"})
    message = str(caught.value)
    assert "appdb:instanceClass = 'db.x2iedn.xlarge'" in message
    assert "not offered for MySQL 8.4" in message and "us-east-1" in message
    assert [r.type for r in caught.value.declared] == ["pulumi:providers:aws"]


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("instanceClass", "db.foo.bar", "RDS instance class"),
        ("instanceClass", "db.r6g.huge", "RDS instance class"),
        ("aws:region", "us-east1", "did you mean us-east-1?"),
    ],
)
def test_8_shapes_of_classes_and_regions_are_checked(key, value, words):
    with pytest.raises(PlanError) as caught:
        run_plan(ROOT, "staging", overrides={key: value})
    assert words in str(caught.value)
    assert repr(value) in str(caught.value)


# --- 10. smaller ---------------------------------------------------------------------------------


def test_10_the_flow_log_waits_for_its_role_policy():
    plan = plan_of("production")
    (flow_log,) = plan.of_type("aws:ec2/flowLog:FlowLog")
    assert plan.by_name("network-flow-logs-delivery").urn in flow_log.options["depends_on"]


@pytest.mark.parametrize(("stack", "protected"), [("staging", False), ("production", True)])
def test_10_production_database_instances_are_protected(stack, protected):
    for instance in plan_of(stack).of_type(INSTANCE):
        assert instance.options["protect"] is protected, instance.name
