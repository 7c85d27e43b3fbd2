"""The real program with each real stack file, under the mock engine: the shape each environment
gets. (FSBP controls on the production plan: tests/test_infra_fsbp.py.)"""

from __future__ import annotations

import json

import pytest
from infra_plans import INSTANCE, kms_key_arn, plan_of, policy, primary, replicas

from planner import SECRET_PLACEHOLDER

STACKS = ("staging", "production")

# Types that hold data or logs and must be encrypted with the environment's CMK, and the input
# naming the key.
ENCRYPTED_TYPES = {
    "aws:rds/instance:Instance": ("performanceInsightsKmsKeyId",),
    "aws:secretsmanager/secret:Secret": ("kmsKeyId",),
    "aws:cloudwatch/logGroup:LogGroup": ("kmsKeyId",),
}


@pytest.mark.parametrize(
    ("stack", "zones", "replica_count", "multi_az", "backup_days", "protected"),
    [("staging", 2, 0, False, 7, False), ("production", 3, 2, True, 30, True)],
)
def test_per_environment_sizing(stack, zones, replica_count, multi_az, backup_days, protected):
    plan = plan_of(stack)
    subnets = plan.of_type("aws:ec2/subnet:Subnet")
    assert len(subnets) == zones
    assert len({s.inputs["availabilityZone"] for s in subnets}) == zones
    assert len(replicas(plan)) == replica_count
    db = primary(plan)
    assert db.inputs["multiAz"] is multi_az
    assert db.inputs["backupRetentionPeriod"] == backup_days
    assert db.inputs["deletionProtection"] is protected
    assert len(plan.outputs["subnetIds"]) == zones


def test_staging_uses_a_small_burstable_class_and_production_a_memory_class():
    assert primary(plan_of("staging")).inputs["instanceClass"].startswith("db.t4g.")
    assert primary(plan_of("production")).inputs["instanceClass"] == "db.r6g.large"


def test_staging_skips_the_final_snapshot():
    db = primary(plan_of("staging"))
    assert db.inputs["skipFinalSnapshot"] is True
    assert "finalSnapshotIdentifier" not in db.inputs


def test_production_final_snapshot_is_named_after_the_instance_not_a_timestamp():
    db = primary(plan_of("production"))
    assert db.inputs["skipFinalSnapshot"] is False
    # Unique per instance (the identifier carries a RandomId suffix) and stable across updates:
    # nothing time-derived, so re-planning gives the same value.
    assert db.inputs["finalSnapshotIdentifier"] == f"{db.inputs['identifier']}-final"
    suffix = plan_of("production").by_name("database-identifier-suffix")
    assert suffix.type == "random:index/randomId:RandomId"
    # The suffix is re-drawn exactly when an input that replaces the instance changes.
    assert set(suffix.inputs["keepers"]) == {"engine", "dbName", "username", "kmsKeyId"}


@pytest.mark.parametrize("stack", STACKS)
def test_everything_that_stores_data_is_encrypted_with_the_environments_cmk(stack):
    plan = plan_of(stack)
    key = kms_key_arn(plan)
    checked = 0
    for type_token, inputs in ENCRYPTED_TYPES.items():
        for resource in plan.of_type(type_token):
            for name in inputs:
                assert resource.inputs.get(name) == key, (resource.name, name)
                checked += 1
    assert checked >= 8
    # Storage: the primary names the key; same-region replicas inherit it (infra/database.py).
    assert primary(plan).inputs["kmsKeyId"] == key
    for instance in plan.of_type(INSTANCE):
        assert instance.inputs["storageEncrypted"] is True
        assert instance.inputs["performanceInsightsEnabled"] is True


@pytest.mark.parametrize("stack", STACKS)
def test_kms_key_rotates_and_has_the_environment_alias(stack):
    plan = plan_of(stack)
    (key,) = plan.of_type("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    (alias,) = plan.of_type("aws:kms/alias:Alias")
    assert alias.inputs["name"] == f"alias/appdb-{stack}-rds"


def test_kms_deletion_window_comes_from_config():
    assert plan_of("staging").of_type("aws:kms/key:Key")[0].inputs["deletionWindowInDays"] == 7
    assert plan_of("production").of_type("aws:kms/key:Key")[0].inputs["deletionWindowInDays"] == 30


@pytest.mark.parametrize("stack", STACKS)
def test_key_policy_lets_rds_secrets_manager_and_logs_of_this_account_use_the_key(stack):
    document = policy(plan_of(stack).of_type("aws:kms/key:Key")[0])
    text = json.dumps(document)
    for service in ("rds.us-east-1.amazonaws.com", "secretsmanager.us-east-1.amazonaws.com"):
        assert service in text
    logs = [
        s for s in document["Statement"] if s["Principal"].get("Service", "").startswith("logs.")
    ]
    assert logs and "123456789012" in json.dumps(logs[0]["Condition"])
    via = [s for s in document["Statement"] if "kms:ViaService" in json.dumps(s.get("Condition"))]
    assert via and all(
        s["Condition"]["StringEquals"]["kms:CallerAccount"] == "123456789012" for s in via
    )


@pytest.mark.parametrize("stack", STACKS)
def test_no_instance_is_publicly_accessible_and_all_sit_in_the_private_subnet_group(stack):
    plan = plan_of(stack)
    (subnet_group,) = plan.of_type("aws:rds/subnetGroup:SubnetGroup")
    subnet_ids = sorted(plan.outputs["subnetIds"])
    assert sorted(subnet_group.inputs["subnetIds"]) == subnet_ids
    for instance in plan.of_type(INSTANCE):
        assert instance.inputs["publiclyAccessible"] is False
    assert primary(plan).inputs["dbSubnetGroupName"]
    for subnet in plan.of_type("aws:ec2/subnet:Subnet"):
        assert subnet.inputs["mapPublicIpOnLaunch"] is False
    assert not plan.of_type("aws:ec2/internetGateway:InternetGateway")
    assert not plan.of_type("aws:ec2/route:Route")
    for table in plan.of_type("aws:ec2/routeTable:RouteTable"):
        assert not table.inputs.get("routes")


@pytest.mark.parametrize(("stack", "port"), [("staging", 3306), ("production", 3407)])
def test_database_port_admitted_only_from_the_application_group(stack, port):
    plan = plan_of(stack)
    db_sg = plan.by_name("network-db-sg")
    app_sg = plan.by_name("network-app-sg")
    db_sg_id, app_sg_id = (
        plan.outputs["databaseSecurityGroupId"],
        plan.outputs["applicationSecurityGroupId"],
    )
    # Besides the runner function's rule (tests/test_infra_runner.py), one rule: the
    # application group.
    ingress = [
        r
        for r in plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == db_sg_id and not r.name.startswith("runner-")
    ]
    assert len(ingress) == 1
    (rule,) = ingress
    assert rule.inputs["securityGroupId"] == db_sg_id
    assert rule.inputs["referencedSecurityGroupId"] == app_sg_id
    assert (rule.inputs["fromPort"], rule.inputs["toPort"], rule.inputs["ipProtocol"]) == (
        port,
        port,
        "tcp",
    )
    assert "cidrIpv4" not in rule.inputs and "cidrIpv6" not in rule.inputs
    for group in (db_sg, app_sg):
        assert not group.inputs.get("ingress") and not group.inputs.get("egress")
    for instance in plan.of_type(INSTANCE):
        assert instance.inputs["vpcSecurityGroupIds"] == [db_sg_id]
        assert instance.inputs["port"] == port
    assert plan.outputs["port"] == port


@pytest.mark.parametrize("stack", STACKS)
def test_parameter_group_carries_the_seed_settings_and_is_auto_named(stack):
    plan = plan_of(stack)
    group = plan.by_name("database-params")
    params = {p["name"]: p["value"] for p in group.inputs["parameters"]}
    assert params["slow_query_log"] == "1"
    assert params["long_query_time"] == "2"
    assert params["general_log"] == "0"
    assert params["innodb_buffer_pool_size"] == "{DBInstanceClassMemory*3/4}"
    assert params["require_secure_transport"] == "1"
    assert params["character_set_server"] == "utf8mb4"
    assert params["collation_server"] == "utf8mb4_0900_ai_ci"
    # schema/V3 creates a stored function; RDS's master user needs this to do so.
    assert params["log_bin_trust_function_creators"] == "1"
    assert group.inputs["family"] == "mysql8.4"
    # No fixed name: a family change creates the new group before deleting the old one.
    for each in plan.of_type("aws:rds/parameterGroup:ParameterGroup"):
        assert "name" not in each.inputs and "namePrefix" not in each.inputs
        assert not each.options["delete_before_replace"]
        assert each.inputs["parameters"] == group.inputs["parameters"]
    # The group's auto-generated name (logical name plus a suffix).
    assert primary(plan).inputs["parameterGroupName"].startswith(f"{group.name}-")


def test_production_parameter_override_from_stack_config_is_applied():
    group = plan_of("production").by_name("database-params")
    assert {p["name"]: p["value"] for p in group.inputs["parameters"]}["max_connections"] == "1000"
    (staging_group,) = plan_of("staging").of_type("aws:rds/parameterGroup:ParameterGroup")
    assert "max_connections" not in {p["name"] for p in staging_group.inputs["parameters"]}


@pytest.mark.parametrize("stack", STACKS)
def test_option_group_enables_the_mariadb_audit_plugin(stack):
    for group in plan_of(stack).of_type("aws:rds/optionGroup:OptionGroup"):
        assert group.inputs["engineName"] == "mysql"
        assert group.inputs["majorEngineVersion"] == "8.4"
        assert [o["optionName"] for o in group.inputs["options"]] == ["MARIADB_AUDIT_PLUGIN"]
    assert primary(plan_of(stack)).inputs["optionGroupName"].startswith("database-options-")


@pytest.mark.parametrize("stack", STACKS)
def test_log_groups_exist_before_the_instances_encrypted_and_retained(stack):
    plan = plan_of(stack)
    retention = {"staging": 30, "production": 365}[stack]
    log_groups = {g.inputs["name"]: g for g in plan.of_type("aws:cloudwatch/logGroup:LogGroup")}
    for instance in plan.of_type(INSTANCE):
        identifier = instance.inputs["identifier"]
        assert instance.inputs["enabledCloudwatchLogsExports"] == [
            "audit",
            "error",
            "general",
            "slowquery",
        ]
        for log in ("audit", "error", "general", "slowquery"):
            group = log_groups[f"/aws/rds/instance/{identifier}/{log}"]
            assert group.inputs["retentionInDays"] == retention
            assert group.urn in instance.options["depends_on"]


@pytest.mark.parametrize("stack", STACKS)
def test_instances_pin_engine_and_storage_and_monitoring(stack):
    plan = plan_of(stack)
    db = primary(plan)
    assert (db.inputs["engine"], db.inputs["engineVersion"]) == ("mysql", "8.4")
    storage = {"staging": (20, 100), "production": (100, 1000)}[stack]
    assert (db.inputs["allocatedStorage"], db.inputs["maxAllocatedStorage"]) == storage
    role = plan.by_name("database-monitoring-role")
    assert "monitoring.rds.amazonaws.com" in role.inputs["assumeRolePolicy"]
    attachment = plan.by_name("database-monitoring-policy")
    assert attachment.inputs["policyArn"].endswith("service-role/AmazonRDSEnhancedMonitoringRole")
    for instance in plan.of_type(INSTANCE):
        assert instance.inputs["storageType"] == "gp3"
        assert instance.inputs["monitoringInterval"] == 60
        assert instance.inputs["monitoringRoleArn"].endswith(f"role/{attachment.inputs['role']}")
        assert attachment.urn in instance.options["depends_on"]
        assert instance.inputs["caCertIdentifier"] == "rds-ca-rsa2048-g1"
    assert db.inputs["applyImmediately"] is (stack == "staging")


def test_production_replicas_replicate_the_primary_in_other_zones():
    plan = plan_of("production")
    db = primary(plan)
    zones = sorted(s.inputs["availabilityZone"] for s in plan.of_type("aws:ec2/subnet:Subnet"))
    replica_zones = []
    for n, replica in enumerate(sorted(replicas(plan), key=lambda r: r.name), start=1):
        assert replica.inputs["replicateSourceDb"] == db.inputs["identifier"]
        assert replica.inputs["identifier"] == f"{db.inputs['identifier']}-replica-{n}"
        assert "kmsKeyId" not in replica.inputs  # inherited from the primary, same region
        assert replica.inputs["skipFinalSnapshot"] is True
        for absent in ("password", "username", "dbName"):
            assert absent not in replica.inputs
        replica_zones.append(replica.inputs["availabilityZone"])
    assert replica_zones == zones[1:3]


def test_master_password_is_long_rds_safe_and_the_instance_ignores_later_changes():
    plan = plan_of("production")
    password = plan.by_name("credentials-master-password")
    assert password.inputs["length"] >= 32
    assert not set(password.inputs["overrideSpecial"]) & set('/@" ')
    db = primary(plan)
    assert db.inputs["password"] == SECRET_PLACEHOLDER
    assert db.options["ignore_changes"] == ["password"]
    assert db.inputs["username"] == "appdb_master"


@pytest.mark.parametrize("stack", STACKS)
def test_secret_is_encrypted_named_per_environment_and_its_value_is_secret(stack):
    plan = plan_of(stack)
    secret = plan.by_name("credentials-master-secret")
    assert secret.inputs["namePrefix"] == f"appdb/{stack}/rds/master-"
    assert plan.outputs["secretName"].startswith(f"appdb/{stack}/rds/master-")
    assert secret.inputs["recoveryWindowInDays"] == {"staging": 7, "production": 30}[stack]
    version = plan.by_name("credentials-master-secret-value")
    assert version.inputs["secretString"] == SECRET_PLACEHOLDER
    assert version.inputs["secretId"] == plan.outputs["secretArn"]
    assert primary(plan).urn in version.options["depends_on"]


@pytest.mark.parametrize("stack", STACKS)
def test_outputs_expose_the_connection_facts_with_the_sensitive_ones_secret(stack):
    outputs = plan_of(stack).outputs
    assert set(outputs) >= {
        "writerEndpoint", "port", "databaseName", "secretArn", "kmsKeyArn", "replicaEndpoints",
        "vpcId", "subnetIds", "databaseSecurityGroupId", "applicationSecurityGroupId",
    }  # fmt: skip
    for secret_output in ("writerEndpoint", "replicaEndpoints", "masterUsername"):
        assert outputs[secret_output] == SECRET_PLACEHOLDER
    assert outputs["databaseName"] == "appdb"
    assert outputs["vpcId"].startswith("vpc-")
    assert outputs["secretArn"].startswith("arn:aws:secretsmanager:")


@pytest.mark.parametrize("stack", STACKS)
def test_no_plain_text_password_anywhere_in_the_plan(stack):
    plan = plan_of(stack)
    # The mock's generated password starts with "Mock"; it must not leak into any input/output.
    assert "Mock" not in plan.to_json()


@pytest.mark.parametrize("stack", STACKS)
def test_tags_applied_once_through_the_providers_default_tags(stack):
    """Approach: the stack's explicit AWS provider carries Project/Environment/ManagedBy as
    default tags, and every AWS resource is created through that provider (and the stack files
    disable the default provider). Under mocks default tags are visible on the provider only,
    so this asserts both halves."""
    plan = plan_of(stack)
    (provider,) = plan.of_type("pulumi:providers:aws")
    # Provider inputs of object type travel as JSON text.
    assert json.loads(provider.inputs["defaultTags"])["tags"] == {
        "Project": "appdb",
        "Environment": stack,
        "ManagedBy": "pulumi",
    }
    assert provider.inputs["region"] == "us-east-1"
    aws_resources = [r for r in plan.resources if r.custom and r.type.startswith("aws:")]
    assert len(aws_resources) > 20
    for resource in aws_resources:
        assert resource.options["provider"] == provider.urn, resource.name
        # Nothing repeats the standard tags by hand.
        assert not set(resource.inputs.get("tags", {})) & {"Project", "Environment", "ManagedBy"}


@pytest.mark.parametrize("stack", STACKS)
def test_components_have_project_type_tokens_and_parent_their_children(stack):
    plan = plan_of(stack)
    components = {r.name: r for r in plan.resources if not r.custom}
    assert {name: c.type for name, c in components.items()}.items() >= {
        "encryption": "appdb:encryption:Encryption",
        "network": "appdb:network:Network",
        "credentials": "appdb:credentials:Credentials",
        "database": "appdb:database:Database",
    }.items()
    for resource in plan.resources:
        if resource.custom and not resource.type.startswith("pulumi:providers:"):
            assert resource.parent in {c.urn for c in components.values()}, resource.name
            assert resource.component in components


@pytest.mark.parametrize("stack", STACKS)
def test_vpc_has_dns_and_flow_logs_to_an_encrypted_group(stack):
    plan = plan_of(stack)
    (vpc,) = plan.of_type("aws:ec2/vpc:Vpc")
    assert vpc.inputs["enableDnsSupport"] is True and vpc.inputs["enableDnsHostnames"] is True
    (flow_log,) = plan.of_type("aws:ec2/flowLog:FlowLog")
    group = plan.by_name("network-flow-logs")
    assert flow_log.inputs["logDestination"].endswith(f"log-group:{group.inputs['name']}")
    assert group.inputs["kmsKeyId"] == kms_key_arn(plan)
    assert group.inputs["retentionInDays"] == {"staging": 30, "production": 365}[stack]


def test_service_roles_trust_only_their_service():
    plan = plan_of("production")
    flow_trust = policy(plan.by_name("network-flow-logs-role"), "assumeRolePolicy")
    (statement,) = flow_trust["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    delivery = policy(plan.by_name("network-flow-logs-delivery"))
    (grant,) = delivery["Statement"]
    assert all(
        r.startswith("arn:aws:logs:us-east-1:123456789012:log-group:/aws/vpc/flow-logs/")
        for r in grant["Resource"]
    )
    monitoring_trust = policy(plan.by_name("database-monitoring-role"), "assumeRolePolicy")
    assert [s["Principal"] for s in monitoring_trust["Statement"]] == [
        {"Service": "monitoring.rds.amazonaws.com"}
    ]
