"""Monitoring on both real stacks' plans: the seed's alerts as CloudWatch alarms per instance,
the notification topic and who may use it, RDS event subscriptions, the dashboard; and what
config changes about them."""

from __future__ import annotations

import json
from functools import cache

import pytest
from infra_plans import ROOT, kms_key_arn, plan_of, policy, primary, replicas
from test_settings import parse, problems

from planner import Plan, run_plan

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
GIB = 1024**3


def alarms_of(plan: Plan, identifier: str) -> dict[str, dict]:
    """The instance's alarms by their suffix (down, connections, ...)."""
    found = {}
    for alarm in plan.of_type(ALARM):
        inputs = alarm.inputs
        if inputs.get("dimensions", {}).get("DBInstanceIdentifier") == identifier:
            found[inputs["name"].rsplit(f"-{role_of(plan, identifier)}-", 1)[1]] = inputs
    return found


def role_of(plan: Plan, identifier: str) -> str:
    if primary(plan).inputs["identifier"] == identifier:
        return "primary"
    return f"replica-{identifier.rsplit('-', 1)[1]}"


def topic_arn(plan: Plan) -> str:
    return plan.outputs["alarmTopicArn"]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_every_instance_has_the_seeds_alarms(stack):
    plan = plan_of(stack)
    instances = [primary(plan), *replicas(plan)]
    assert len(instances) == (1 if stack == "staging" else 3)
    for instance in instances:
        alarms = alarms_of(plan, instance.inputs["identifier"])
        expected = {"down", "connections", "cpu", "free-storage", "freeable-memory"}
        if instance.inputs["instanceClass"].startswith("db.t"):
            expected.add("cpu-credits")
        if "replicateSourceDb" in instance.inputs:
            expected |= {"replica-lag", "replication-stopped"}
        assert set(alarms) == expected, instance.name
        down = alarms["down"]
        assert (down["statistic"], down["comparisonOperator"], down["threshold"]) == (
            "SampleCount", "LessThanThreshold", 1,
        )  # fmt: skip
        assert down["treatMissingData"] == "breaching"  # no metrics at all: it is down
        assert (down["evaluationPeriods"], down["period"]) == (1, 60)  # seed: for 0m
        assert alarms["connections"]["evaluationPeriods"] == 2  # seed: for 2m
        for alarm in alarms.values():
            assert alarm["alarmActions"] == alarm["okActions"] == [topic_arn(plan)]
            assert alarm["namespace"] == "AWS/RDS"


def test_replica_lag_alarm_is_the_seeds_30_seconds_for_one_minute():
    plan = plan_of("production")
    for replica in replicas(plan):
        lag = alarms_of(plan, replica.inputs["identifier"])["replica-lag"]
        assert (lag["metricName"], lag["comparisonOperator"], lag["threshold"]) == (
            "ReplicaLag", "GreaterThanThreshold", 30,
        )  # fmt: skip
        assert lag["evaluationPeriods"] == 1
        stopped = alarms_of(plan, replica.inputs["identifier"])["replication-stopped"]
        assert (stopped["statistic"], stopped["threshold"]) == ("Minimum", 0)


def test_connections_alarm_follows_max_connections_of_the_class_or_the_parameter_group():
    # Staging: db.t4g.medium (4 GiB), RDS's default {DBInstanceClassMemory/12582880} = 341.
    staging = plan_of("staging")
    connections = alarms_of(staging, primary(staging).inputs["identifier"])["connections"]
    assert connections["threshold"] == 4 * GIB // 12582880 * 80 // 100 == 272
    # Production overrides max_connections to 1000 in its parameter group.
    production = plan_of("production")
    for params in production.of_type("aws:rds/parameterGroup:ParameterGroup"):
        setting = {"name": "max_connections", "value": "1000", "applyMethod": "immediate"}
        assert setting in params.inputs["parameters"]
    for instance in [primary(production), *replicas(production)]:
        alarm = alarms_of(production, instance.inputs["identifier"])["connections"]
        assert alarm["threshold"] == 800


def test_storage_and_memory_thresholds_are_percentages_of_what_the_instance_has():
    plan = plan_of("production")
    alarms = alarms_of(plan, primary(plan).inputs["identifier"])
    assert alarms["free-storage"]["threshold"] == 100 * GIB // 10  # 10% of 100 GiB
    assert alarms["freeable-memory"]["threshold"] == 16 * GIB // 10  # db.r6g.large: 16 GiB


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_slow_queries_are_counted_from_the_exported_slow_query_log(stack):
    plan = plan_of(stack)
    filters = plan.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")
    log_groups = {g.inputs["name"] for g in plan.of_type("aws:cloudwatch/logGroup:LogGroup")}
    instances = [primary(plan), *replicas(plan)]
    assert len(filters) == len(instances)
    slow_alarms = {a.inputs["metricName"]: a.inputs for a in plan.of_type(ALARM)}
    for instance in instances:
        identifier = instance.inputs["identifier"]
        (metric_filter,) = [
            f
            for f in filters
            if f.inputs["logGroupName"] == f"/aws/rds/instance/{identifier}/slowquery"
        ]
        assert metric_filter.inputs["logGroupName"] in log_groups  # the exported, encrypted one
        assert instance.urn in metric_filter.options["depends_on"]
        transformation = metric_filter.inputs["metricTransformation"]
        alarm = slow_alarms[transformation["name"]]
        assert alarm["namespace"] == transformation["namespace"]
        assert (alarm["statistic"], alarm["period"], alarm["threshold"]) == ("Sum", 300, 10)
        assert alarm["treatMissingData"] == "notBreaching"  # no slow query, no log event


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_notifications_go_to_a_topic_encrypted_with_the_stacks_key(stack):
    plan = plan_of(stack)
    (topic,) = plan.of_type("aws:sns/topic:Topic")
    assert topic.inputs["kmsMasterKeyId"] == kms_key_arn(plan)
    (topic_policy,) = plan.of_type("aws:sns/topicPolicy:TopicPolicy")
    statements = {s["Sid"]: s for s in policy(topic_policy)["Statement"]}
    for sid, service in (
        ("CloudWatchAlarmsOfThisAccount", "cloudwatch.amazonaws.com"),
        ("RdsEventsOfThisAccount", "events.rds.amazonaws.com"),
    ):
        statement = statements[sid]
        assert statement["Principal"] == {"Service": service}
        assert statement["Action"] == "sns:Publish"
        assert statement["Resource"] == topic_arn(plan)
        assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    # The key lets both publishers encrypt to the topic (SNS SSE needs the data key).
    (key,) = plan.of_type("aws:kms/key:Key")
    publishers = {
        s["Principal"].get("Service"): s
        for s in policy(key)["Statement"]
        if "Service" in s["Principal"]
    }
    for service in ("cloudwatch.amazonaws.com", "events.rds.amazonaws.com"):
        assert set(publishers[service]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert plan.of_type("aws:sns/topicSubscription:TopicSubscription") == []  # none configured


def test_dashboard_per_environment_is_exported_as_a_url():
    plan = plan_of("production")
    (dashboard,) = plan.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert dashboard.inputs["dashboardName"] == "appdb-production"
    assert plan.outputs["dashboardUrl"] == (
        "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
        "#dashboards/dashboard/appdb-production"
    )
    body = json.loads(dashboard.inputs["dashboardBody"])
    titles = {w["properties"]["title"] for w in body["widgets"]}
    assert {"Connections", "Replica lag (s)", "Free storage (bytes)"} <= titles
    assert any("latency" in t for t in titles)
    text = json.dumps(body)
    for instance in [primary(plan), *replicas(plan)]:
        assert instance.inputs["identifier"] in text
    assert "Replica lag (s)" not in json.dumps(
        json.loads(
            plan_of("staging")
            .of_type("aws:cloudwatch/dashboard:Dashboard")[0]
            .inputs["dashboardBody"]
        )
    )  # no replicas in staging


# --- config -----------------------------------------------------------------------------------


@cache
def staging_with(**overrides: object) -> Plan:
    return run_plan(ROOT, "staging", overrides=overrides)


def test_emails_subscribe_to_the_topic_and_thresholds_come_from_config():
    plan = staging_with(
        alarmEmails="ops@example.com, dba@example.org",
        alarmConnectionsPercent=50,
        alarmConnectionsPeriods=3,
        alarmReplicaLagSeconds=5,
        alarmSlowQueries=100,
    )
    subscriptions = plan.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert sorted((s.inputs["protocol"], s.inputs["endpoint"]) for s in subscriptions) == [
        ("email", "dba@example.org"), ("email", "ops@example.com"),
    ]  # fmt: skip
    assert {s.inputs["topic"] for s in subscriptions} == {topic_arn(plan)}
    alarms = alarms_of(plan, primary(plan).inputs["identifier"])
    assert alarms["connections"]["threshold"] == 341 * 50 // 100
    assert alarms["connections"]["evaluationPeriods"] == 3
    slow = [a.inputs for a in plan.of_type(ALARM) if a.inputs["name"].endswith("slow-queries")]
    assert [a["threshold"] for a in slow] == [100]


def test_an_existing_topic_replaces_the_stacks_own():
    existing = "arn:aws:sns:us-east-1:123456789012:ops-pager"
    plan = staging_with(alarmTopicArn=existing)
    assert plan.of_type("aws:sns/topic:Topic") == []
    assert plan.outputs["alarmTopicArn"] == existing
    assert {a.inputs["alarmActions"][0] for a in plan.of_type(ALARM)} == {existing}
    events = plan.of_type("aws:rds/eventSubscription:EventSubscription")
    assert {e.inputs["snsTopic"] for e in events} == {existing}


def test_bad_monitoring_config_is_explained():
    found = problems(
        alarmEmails="ops@example.com, not-an-address",
        alarmTopicArn="arn:aws:sns:us-east-1:123456789012:ops",
        alarmConnectionsPercent=150,
        alarmReplicaLagPeriods=0,
    )
    assert (
        "appdb:alarmEmails = 'ops@example.com, not-an-address': not e-mail addresses: "
        "not-an-address" in found
    )
    assert any(p.startswith("appdb:alarmTopicArn = ") and "not both" in p for p in found)
    assert "appdb:alarmConnectionsPercent = '150': must be an integer from 1 to 100" in found
    assert "appdb:alarmReplicaLagPeriods = '0': must be an integer from 1 to 60" in found
    bad_topic = problems(alarmTopicArn="ops-pager")
    assert any("must be empty or an SNS topic ARN" in p for p in bad_topic)


def test_max_connections_comes_from_the_parameter_group_when_it_sets_one():
    assert parse("staging").monitoring.max_connections == {"db.t4g.medium": 341}
    assert parse("production").monitoring.max_connections == {"db.r6g.large": 1000}
    formula = parse("staging", dbParameters={"max_connections": "{DBInstanceClassMemory/25165760}"})
    assert formula.monitoring.max_connections == {"db.t4g.medium": 4 * GIB // 25165760}
    assert parse("production", replicaInstanceClass="db.r6g.xlarge").monitoring.memory_bytes == {
        "db.r6g.large": 16 * GIB, "db.r6g.xlarge": 32 * GIB,
    }  # fmt: skip
    found = problems(instanceClass="db.q9.large", dbParameters={"max_connections": "lots"})
    assert any(
        p.startswith("appdb:instanceClass = 'db.q9.large': its memory is not known") for p in found
    )
    staging_bad = problems(dbParameters={"max_connections": "lots"})
    assert any(p.startswith("appdb:dbParameters.max_connections = 'lots'") for p in staging_bad)
