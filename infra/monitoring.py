"""Operators see trouble: the seed's Prometheus alerts rebuilt on what RDS publishes.

Per instance, CloudWatch alarms on AWS/RDS metrics (availability as "no metrics at all",
connections against max_connections, CPU, storage, memory, CPU credits on burstable classes,
replica lag and stopped replication on replicas) and on a metric filter counting the slow query
log's entries; RDS event subscriptions for instances, the parameter group and DB security
groups (FSBP RDS.20, RDS.21, RDS.22); all of it notifying one SNS topic encrypted with the
stack's key (or an existing topic from config); one dashboard per environment. The README maps
each seed alert to what replaces it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.instance_classes import GIB, is_burstable
from infra.settings import Settings

NAMESPACE = "AWS/RDS"
PERIOD = 60  # RDS publishes its CloudWatch metrics once a minute
SLOW_QUERY_PERIOD = 300  # the seed counts slow queries over five minutes

# FSBP RDS.20 (instances: maintenance, configuration change, failure) plus the categories the
# seed's MySQLDown stands for (availability, failover, low storage, ...); RDS.21 (parameter
# groups: configuration change); RDS.22 (DB security groups: configuration change, failure).
# https://docs.aws.amazon.com/securityhub/latest/userguide/rds-controls.html
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_Events.Messages.html
INSTANCE_EVENT_CATEGORIES = (
    "availability", "configuration change", "deletion", "failover", "failure", "low storage",
    "maintenance", "notification", "recovery", "restoration",
)  # fmt: skip
PARAMETER_GROUP_EVENT_CATEGORIES = ("configuration change",)
SECURITY_GROUP_EVENT_CATEGORIES = ("configuration change", "failure")


@dataclass(frozen=True)
class MonitoredInstance:
    role: str  # "primary", "replica-1", ...: part of alarm and metric names
    instance: aws.rds.Instance
    instance_class: str
    is_replica: bool


def topic_policy(topic_arn: str, account_id: str, partition: str, region: str) -> str:
    """Who may publish: CloudWatch alarms and RDS events of this account only; the account
    manages the topic. Publishing without TLS is refused."""
    account_root = f"arn:{partition}:iam::{account_id}:root"
    statements = [
        {
            "Sid": "AccountManagesTheTopic",
            "Effect": "Allow",
            "Principal": {"AWS": account_root},
            "Action": [
                "sns:GetTopicAttributes",
                "sns:SetTopicAttributes",
                "sns:AddPermission",
                "sns:RemovePermission",
                "sns:DeleteTopic",
                "sns:Subscribe",
                "sns:ListSubscriptionsByTopic",
                "sns:Publish",
            ],
            "Resource": topic_arn,
        },
        {
            # https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarms-and-actions.html
            "Sid": "CloudWatchAlarmsOfThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": topic_arn,
            "Condition": {
                "ArnLike": {
                    "aws:SourceArn": f"arn:{partition}:cloudwatch:{region}:{account_id}:alarm:*"
                },
                "StringEquals": {"aws:SourceAccount": account_id},
            },
        },
        {
            # https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_Events.GrantingPermissions.html
            "Sid": "RdsEventsOfThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": "events.rds.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": topic_arn,
            "Condition": {
                "ArnLike": {"aws:SourceArn": f"arn:{partition}:rds:{region}:{account_id}:*"},
                "StringEquals": {"aws:SourceAccount": account_id},
            },
        },
        {
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sns:Publish",
            "Resource": topic_arn,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


class Monitoring(pulumi.ComponentResource):
    """Alarms, event subscriptions, the notification topic and the dashboard of one stack."""

    topic_arn: pulumi.Output[str]
    alarms: list[aws.cloudwatch.MetricAlarm]
    dashboard_url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        settings: Settings,
        kms_key_arn: pulumi.Input[str],
        instances: Sequence[MonitoredInstance],
        parameter_group_names: Sequence[pulumi.Input[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("appdb:monitoring:Monitoring", name, None, opts)
        self._settings = settings
        self._name = name
        self._prefix = settings.name_prefix
        m = settings.monitoring
        invoke = pulumi.InvokeOptions(parent=self)
        account_id = aws.get_caller_identity(opts=invoke).account_id
        partition = aws.get_partition(opts=invoke).partition
        region = settings.region

        if m.alarm_topic_arn:
            # The operator's own topic: its policy and key are theirs to open to CloudWatch
            # and RDS events (README, "Monitoring").
            self.topic_arn = pulumi.Output.from_input(m.alarm_topic_arn)
            depends: list[pulumi.Resource] = []
        else:
            topic = aws.sns.Topic(
                f"{name}-topic",
                name=f"{self._prefix}-alarms",
                # Encrypted with the stack's key, whose policy lets CloudWatch and RDS events
                # use it (infra/encryption.py).
                kms_master_key_id=kms_key_arn,
                opts=pulumi.ResourceOptions(parent=self),
            )
            policy = aws.sns.TopicPolicy(
                f"{name}-topic-policy",
                arn=topic.arn,
                policy=topic.arn.apply(
                    lambda arn: topic_policy(arn, account_id, partition, region)
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for n, email in enumerate(m.alarm_emails, start=1):
                aws.sns.TopicSubscription(
                    f"{name}-email-{n}",
                    topic=topic.arn,
                    protocol="email",
                    endpoint=email,
                    opts=pulumi.ResourceOptions(parent=self),
                )
            self.topic_arn = topic.arn
            depends = [policy]
        self._depends = depends

        self.alarms = []
        for target in instances:
            self._instance_alarms(target)
        self._event_subscriptions(instances, parameter_group_names)

        dashboard_name = self._prefix
        identifiers = [t.instance.identifier for t in instances]
        aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=dashboard_name,
            dashboard_body=pulumi.Output.all(*identifiers).apply(
                lambda ids: dashboard_body(self._settings, instances, [str(i) for i in ids])
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.dashboard_url = pulumi.Output.from_input(
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards/dashboard/{dashboard_name}"
        )
        self.register_outputs({"topicArn": self.topic_arn, "dashboardUrl": self.dashboard_url})

    # --- alarms -----------------------------------------------------------------------------

    def _alarm(
        self,
        target: MonitoredInstance,
        what: str,
        description: str,
        *,
        metric: str,
        statistic: str,
        comparison: str,
        threshold: float,
        periods: int,
        treat_missing: str = "missing",
        period: int = PERIOD,
        namespace: str = NAMESPACE,
        dimensions: bool = True,
    ) -> None:
        alarm_name = f"{self._prefix}-{target.role}-{what}"
        self.alarms.append(
            aws.cloudwatch.MetricAlarm(
                f"{self._name}-{target.role}-{what}",
                name=alarm_name,
                alarm_description=f"{self._prefix} {target.role}: {description}",
                namespace=namespace,
                metric_name=metric,
                dimensions={"DBInstanceIdentifier": target.instance.identifier}
                if dimensions
                else None,
                statistic=statistic,
                period=period,
                evaluation_periods=periods,
                datapoints_to_alarm=periods,
                threshold=threshold,
                comparison_operator=comparison,
                treat_missing_data=treat_missing,
                alarm_actions=[self.topic_arn],
                ok_actions=[self.topic_arn],
                opts=pulumi.ResourceOptions(parent=self, depends_on=self._depends),
            )
        )

    def _instance_alarms(self, target: MonitoredInstance) -> None:
        s, m = self._settings, self._settings.monitoring
        max_connections = m.max_connections[target.instance_class]
        memory = m.memory_bytes[target.instance_class]
        # Seed MySQLDown: an instance that is down publishes no metrics, so missing data counts
        # as breaching (the event subscription below says why it went down).
        self._alarm(
            target, "down", "no CPUUtilization data: the instance is not running",
            metric="CPUUtilization", statistic="SampleCount", comparison="LessThanThreshold",
            threshold=1, periods=m.availability_periods, treat_missing="breaching",
        )  # fmt: skip
        connections = max_connections * m.connections.threshold // 100
        self._alarm(
            target, "connections",
            f"DatabaseConnections above {m.connections.threshold}% of max_connections "
            f"({connections} of {max_connections})",
            metric="DatabaseConnections", statistic="Maximum",
            comparison="GreaterThanThreshold", threshold=connections,
            periods=m.connections.evaluation_periods,
        )  # fmt: skip
        self._alarm(
            target, "cpu", f"CPUUtilization above {m.cpu.threshold}%",
            metric="CPUUtilization", statistic="Average", comparison="GreaterThanThreshold",
            threshold=m.cpu.threshold, periods=m.cpu.evaluation_periods,
        )  # fmt: skip
        # Against the initial allocation: storage autoscaling (up to appdb:maxAllocatedStorage)
        # adds space when free space runs low, so this alarm means it has not (yet) helped.
        storage = s.allocated_storage * GIB * m.free_storage.threshold // 100
        self._alarm(
            target, "free-storage",
            f"FreeStorageSpace below {m.free_storage.threshold}% of {s.allocated_storage} GiB",
            metric="FreeStorageSpace", statistic="Minimum", comparison="LessThanThreshold",
            threshold=storage, periods=m.free_storage.evaluation_periods,
        )  # fmt: skip
        self._alarm(
            target, "freeable-memory",
            f"FreeableMemory below {m.freeable_memory.threshold}% of {target.instance_class}",
            metric="FreeableMemory", statistic="Minimum", comparison="LessThanThreshold",
            threshold=memory * m.freeable_memory.threshold // 100,
            periods=m.freeable_memory.evaluation_periods,
        )  # fmt: skip
        if is_burstable(target.instance_class):
            # gp3 storage (this stack) has no I/O burst bucket, so BurstBalance (gp2 only)
            # publishes nothing; CPU credits are what a db.t* class runs out of.
            self._alarm(
                target, "cpu-credits",
                f"CPUCreditBalance below {m.cpu_credit_balance.threshold} credits",
                metric="CPUCreditBalance", statistic="Minimum",
                comparison="LessThanThreshold", threshold=m.cpu_credit_balance.threshold,
                periods=m.cpu_credit_balance.evaluation_periods,
            )  # fmt: skip
        if target.is_replica:
            self._alarm(
                target, "replica-lag", f"ReplicaLag above {m.replica_lag.threshold} s",
                metric="ReplicaLag", statistic="Maximum", comparison="GreaterThanThreshold",
                threshold=m.replica_lag.threshold, periods=m.replica_lag.evaluation_periods,
            )  # fmt: skip
            # RDS reports ReplicaLag -1 while replication is not running, which a lag
            # threshold never sees.
            # https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_ReadRepl.Monitoring.html
            self._alarm(
                target, "replication-stopped", "ReplicaLag -1: replication is not running",
                metric="ReplicaLag", statistic="Minimum", comparison="LessThanThreshold",
                threshold=0, periods=m.replica_lag.evaluation_periods,
            )  # fmt: skip
        # Seed MySQLSlowQueries: every entry of the exported slow query log carries one
        # "# Query_time:" line; the filter counts them per instance.
        metric = f"SlowQueries-{target.role}"
        aws.cloudwatch.LogMetricFilter(
            f"{self._name}-{target.role}-slow-queries",
            name=f"{self._prefix}-{target.role}-slow-queries",
            log_group_name=target.instance.identifier.apply(
                lambda i: f"/aws/rds/instance/{i}/slowquery"
            ),
            pattern='"Query_time"',
            metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                name=metric, namespace=self._prefix, value="1", unit="Count"
            ),
            # The log group is created before the instance (infra/database.py).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[target.instance]),
        )
        self._alarm(
            target, "slow-queries",
            f"more than {m.slow_queries.threshold} slow queries in 5 minutes",
            metric=metric, namespace=self._prefix, dimensions=False, statistic="Sum",
            comparison="GreaterThanThreshold", threshold=m.slow_queries.threshold,
            periods=m.slow_queries.evaluation_periods, period=SLOW_QUERY_PERIOD,
            treat_missing="notBreaching",
        )  # fmt: skip

    # --- RDS events ---------------------------------------------------------------------------

    def _event_subscriptions(
        self,
        instances: Sequence[MonitoredInstance],
        parameter_group_names: Sequence[pulumi.Input[str]],
    ) -> None:
        subscriptions: tuple[
            tuple[str, str, Sequence[str], list[pulumi.Input[str]] | None], ...
        ] = (
            (
                "instances",
                "db-instance",
                INSTANCE_EVENT_CATEGORIES,
                [t.instance.identifier for t in instances],
            ),
            (
                "parameter-groups",
                "db-parameter-group",
                PARAMETER_GROUP_EVENT_CATEGORIES,
                list(parameter_group_names),
            ),
            # No source ids: this stack has VPC security groups, not DB security groups;
            # FSBP RDS.22 asks for the subscription all the same.
            ("security-groups", "db-security-group", SECURITY_GROUP_EVENT_CATEGORIES, None),
        )
        for suffix, source_type, categories, source_ids in subscriptions:
            aws.rds.EventSubscription(
                f"{self._name}-events-{suffix}",
                name=f"{self._prefix}-{suffix}",
                sns_topic=self.topic_arn,
                source_type=source_type,
                source_ids=source_ids,
                event_categories=list(categories),
                enabled=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=self._depends),
            )


def dashboard_body(
    settings: Settings, instances: Sequence[MonitoredInstance], identifiers: Sequence[str]
) -> str:
    """The environment's dashboard: the alarms' metrics side by side for every instance."""
    region, m = settings.region, settings.monitoring

    def per_instance(metric: str) -> list[list[str]]:
        return [[NAMESPACE, metric, "DBInstanceIdentifier", i] for i in identifiers]

    def widget(title: str, metrics: list[list[str]], stat: str, **extra: object) -> dict:
        return {
            "type": "metric",
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": region,
                "metrics": metrics,
                "stat": stat,
                "period": PERIOD,
                "view": "timeSeries",
                **extra,
            },
        }

    lowest_max = min(m.max_connections[t.instance_class] for t in instances)
    replicas = [i for t, i in zip(instances, identifiers, strict=True) if t.is_replica]
    widgets = [
        widget(
            "Connections",
            per_instance("DatabaseConnections"),
            "Maximum",
            annotations={
                "horizontal": [
                    {"label": "max_connections", "value": lowest_max},
                    {
                        "label": f"alarm ({m.connections.threshold}%)",
                        "value": lowest_max * m.connections.threshold // 100,
                    },
                ]
            },
        ),
        widget("CPU utilization (%)", per_instance("CPUUtilization"), "Average"),
        widget("Free storage (bytes)", per_instance("FreeStorageSpace"), "Minimum"),
        widget("Freeable memory (bytes)", per_instance("FreeableMemory"), "Minimum"),
        widget(
            "Read and write latency (s)",
            per_instance("ReadLatency") + per_instance("WriteLatency"),
            "Average",
        ),
        # Stand-ins for the seed's query-rate and InnoDB log-wait alerts (README).
        widget(
            "DB load (average active sessions) and disk queue",
            per_instance("DBLoad") + per_instance("DiskQueueDepth"),
            "Average",
        ),
        widget(
            "Slow queries (per 5 minutes)",
            [[settings.name_prefix, f"SlowQueries-{t.role}"] for t in instances],
            "Sum",
            period=SLOW_QUERY_PERIOD,
        ),
    ]
    if replicas:
        widgets.append(
            widget(
                "Replica lag (s)",
                [[NAMESPACE, "ReplicaLag", "DBInstanceIdentifier", i] for i in replicas],
                "Maximum",
                annotations={"horizontal": [{"label": "alarm", "value": m.replica_lag.threshold}]},
            )
        )
    for index, w in enumerate(widgets):
        w["x"], w["y"] = 12 * (index % 2), 6 * (index // 2)
    return json.dumps({"widgets": widgets}, sort_keys=True)
