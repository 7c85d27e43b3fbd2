"""AWS Foundational Security Best Practices on the production plan: one test per control, named
after it. Controls deliberately not met in staging are listed in docs/infrastructure.md."""

from __future__ import annotations

import json

from infra_plans import INSTANCE, kms_key_arn, plan_of, policy, primary

PLAN = "production"
CIDR_KEYS = ("cidrIpv4", "cidrIpv6", "cidrBlocks", "ipv6CidrBlocks")


def instances():
    found = plan_of(PLAN).of_type(INSTANCE)
    assert len(found) == 3  # primary and two replicas
    return found


def test_rds_1_no_snapshot_is_shared_or_made_public():
    plan = plan_of(PLAN)
    sharing = [r for r in plan.resources if "snapshot" in r.type.lower()]
    assert sharing == []  # the only snapshots are RDS's own (automated, final): private


def test_rds_2_instances_prohibit_public_access():
    for instance in instances():
        assert instance.inputs["publiclyAccessible"] is False


def test_rds_3_instances_are_encrypted_at_rest_with_the_cmk():
    db = primary(plan_of(PLAN))
    assert db.inputs["kmsKeyId"] == kms_key_arn(plan_of(PLAN))
    for instance in instances():
        assert instance.inputs["storageEncrypted"] is True
        if instance is not db:
            # a same-region replica is always encrypted with its source's key (and takes none)
            assert instance.inputs["replicateSourceDb"] == db.inputs["identifier"]


def test_rds_4_snapshots_are_encrypted_because_their_instances_are():
    # RDS encrypts snapshots with the key of the encrypted instance they come from.
    for instance in instances():
        assert instance.inputs["storageEncrypted"] is True
    assert primary(plan_of(PLAN)).inputs["kmsKeyId"].startswith("arn:aws:kms:")


def test_rds_5_primary_runs_in_multiple_availability_zones():
    assert primary(plan_of(PLAN)).inputs["multiAz"] is True


def test_rds_6_enhanced_monitoring_is_configured():
    for instance in instances():
        assert instance.inputs["monitoringInterval"] > 0
        assert instance.inputs["monitoringRoleArn"].startswith("arn:aws:iam::")


def test_rds_8_deletion_protection_is_enabled():
    for instance in instances():
        assert instance.inputs["deletionProtection"] is True


def test_rds_9_all_mysql_logs_are_published_to_cloudwatch():
    for instance in instances():
        assert set(instance.inputs["enabledCloudwatchLogsExports"]) >= {
            "audit", "error", "general", "slowquery",
        }  # fmt: skip


def test_rds_10_iam_authentication_is_enabled():
    for instance in instances():
        assert instance.inputs["iamDatabaseAuthenticationEnabled"] is True


def test_rds_11_automatic_backups_are_enabled_for_at_least_seven_days():
    for instance in instances():
        assert instance.inputs["backupRetentionPeriod"] >= 7


def test_rds_13_automatic_minor_version_upgrades_are_enabled():
    for instance in instances():
        assert instance.inputs["autoMinorVersionUpgrade"] is True


def test_rds_17_tags_are_copied_to_snapshots():
    for instance in instances():
        assert instance.inputs["copyTagsToSnapshot"] is True


def test_rds_18_instances_are_deployed_in_the_stacks_vpc():
    plan = plan_of(PLAN)
    (subnet_group,) = plan.of_type("aws:rds/subnetGroup:SubnetGroup")
    vpc_id = plan.outputs["vpcId"]
    subnets = plan.of_type("aws:ec2/subnet:Subnet")
    assert {s.inputs["vpcId"] for s in subnets} == {vpc_id}
    assert sorted(subnet_group.inputs["subnetIds"]) == sorted(plan.outputs["subnetIds"])
    assert primary(plan).inputs["dbSubnetGroupName"].startswith("network-db-subnets-")


def event_subscription(source_type: str):
    plan = plan_of(PLAN)
    (subscription,) = [
        s
        for s in plan.of_type("aws:rds/eventSubscription:EventSubscription")
        if s.inputs["sourceType"] == source_type
    ]
    assert subscription.inputs["enabled"] is True
    assert subscription.inputs["snsTopic"] == plan.outputs["alarmTopicArn"]
    return subscription.inputs


def test_rds_20_event_subscription_covers_critical_instance_events():
    subscription = event_subscription("db-instance")
    assert {"maintenance", "configuration change", "failure"} <= set(
        subscription["eventCategories"]
    )
    identifiers = {i.inputs["identifier"] for i in instances()}
    assert set(subscription["sourceIds"]) == identifiers  # primary and both replicas


def test_rds_21_event_subscription_covers_critical_parameter_group_events():
    subscription = event_subscription("db-parameter-group")
    assert "configuration change" in subscription["eventCategories"]
    # The stack's parameter groups (the primary's and the replicas'), the ones the instances use.
    groups = plan_of(PLAN).of_type("aws:rds/parameterGroup:ParameterGroup")
    assert len(subscription["sourceIds"]) == len(groups) == 2
    assert {i.inputs["parameterGroupName"] for i in instances()} == set(subscription["sourceIds"])


def test_rds_22_event_subscription_covers_critical_security_group_events():
    subscription = event_subscription("db-security-group")
    assert {"configuration change", "failure"} <= set(subscription["eventCategories"])
    assert not subscription.get("sourceIds")  # every DB security group of the account


def test_rds_23_instances_do_not_use_the_engine_default_port():
    for instance in instances():
        assert instance.inputs["port"] != 3306


def test_rds_25_master_user_is_not_a_default_admin_name():
    username = primary(plan_of(PLAN)).inputs["username"]
    assert username.lower() not in {"admin", "root", "administrator", "mysql"}


def test_rds_46_database_subnets_have_no_route_to_an_internet_gateway():
    plan = plan_of(PLAN)
    assert plan.of_type("aws:ec2/internetGateway:InternetGateway") == []
    assert plan.of_type("aws:ec2/route:Route") == []
    (table,) = plan.of_type("aws:ec2/routeTable:RouteTable")
    assert not table.inputs.get("routes")
    associations = plan.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
    subnet_ids = set(plan.outputs["subnetIds"])
    assert {a.inputs["subnetId"] for a in associations} == subnet_ids
    # Every database subnet is associated with the one route table, which has no routes.
    assert len({a.inputs["routeTableId"] for a in associations}) == 1
    assert all(table.urn in a.options["depends_on"] for a in associations)


def test_kms_3_key_is_not_deleted_unintentionally():
    (key,) = plan_of(PLAN).of_type("aws:kms/key:Key")
    assert key.options["protect"] is True  # `pulumi destroy` refuses to schedule its deletion
    assert key.inputs["deletionWindowInDays"] == 30  # the longest waiting period


def test_kms_5_key_policy_grants_no_public_access():
    (key,) = plan_of(PLAN).of_type("aws:kms/key:Key")
    for statement in policy(key)["Statement"]:
        principal = statement["Principal"]
        assert principal != "*"
        assert "*" not in json.dumps(principal.get("AWS", ""))
        if "Service" not in principal:
            assert principal["AWS"] == "arn:aws:iam::123456789012:root"


def test_sns_1_the_alarm_topic_is_encrypted_with_the_cmk():
    (topic,) = plan_of(PLAN).of_type("aws:sns/topic:Topic")
    assert topic.inputs["kmsMasterKeyId"] == kms_key_arn(plan_of(PLAN))


def test_ec2_2_default_security_group_has_no_rules():
    (default_sg,) = plan_of(PLAN).of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default_sg.inputs["ingress"] == [] and default_sg.inputs["egress"] == []
    assert default_sg.inputs["vpcId"] == plan_of(PLAN).outputs["vpcId"]


def test_ec2_6_vpc_flow_logging_is_enabled():
    plan = plan_of(PLAN)
    (flow_log,) = plan.of_type("aws:ec2/flowLog:FlowLog")
    assert flow_log.inputs["vpcId"] == plan.outputs["vpcId"]
    assert flow_log.inputs["trafficType"] == "ALL"
    assert flow_log.inputs["iamRoleArn"].startswith("arn:aws:iam::")


def test_ec2_15_subnets_do_not_assign_public_ips():
    subnets = plan_of(PLAN).of_type("aws:ec2/subnet:Subnet")
    assert len(subnets) == 3
    for subnet in subnets:
        assert subnet.inputs["mapPublicIpOnLaunch"] is False


def _ingress_rules():
    plan = plan_of(PLAN)
    rules = [
        r.inputs for r in plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    ]
    for group in plan.of_type("aws:ec2/securityGroup:SecurityGroup"):
        rules.extend(group.inputs.get("ingress", []))
    assert rules
    return rules


def test_ec2_18_no_unrestricted_ingress_on_any_port():
    for rule in _ingress_rules():
        for key in CIDR_KEYS:
            value = json.dumps(rule.get(key, ""))
            assert "0.0.0.0/0" not in value and "::/0" not in value


def test_ec2_19_no_unrestricted_access_to_high_risk_ports():
    # The only ingress: the database port from the application group and from the runner
    # function's group, and HTTPS into the Secrets Manager endpoint from the function.
    for rule in _ingress_rules():
        assert not any(rule.get(key) for key in CIDR_KEYS)
        assert rule["referencedSecurityGroupId"].startswith("sg-")
        port = primary(plan_of(PLAN)).inputs["port"]
        assert rule["fromPort"] == rule["toPort"] and rule["fromPort"] in (port, 443)
