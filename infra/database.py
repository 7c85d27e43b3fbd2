"""RDS MySQL: parameter and option groups, log groups, monitoring role, the primary and its
read replicas.

Physical identifiers are `<project>-<env>-<suffix>` where the suffix comes from a RandomId:
- it is known before the instances exist, so their CloudWatch log groups (which RDS would
  otherwise create unencrypted and keep forever) are created first under the names RDS uses;
- it is stable across updates, so the final snapshot identifier `<identifier>-final` never shows
  a diff (unlike the seed's timestamp()), and unique per instance: the suffix's keepers are the
  inputs whose change replaces the instance, so a re-created instance gets a new identifier and
  cannot collide with the old instance's final snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra.iam import service_trust_policy
from infra.settings import Settings

# Every log RDS MySQL can export (FSBP RDS.9); audit comes from the option group's plugin.
LOG_EXPORTS = ("audit", "error", "general", "slowquery")
# Events the audit plugin records: logins and schema/privilege changes (QUERY_DML would log
# every write and is left out for volume).
AUDIT_EVENTS = "CONNECT,QUERY_DDL,QUERY_DCL"


class _SharedInstanceArgs(TypedDict):
    storage_type: str
    max_allocated_storage: int
    storage_encrypted: bool
    kms_key_id: pulumi.Input[str]
    publicly_accessible: bool
    vpc_security_group_ids: list[pulumi.Input[str]]
    parameter_group_name: pulumi.Input[str]
    option_group_name: pulumi.Input[str]
    ca_cert_identifier: str
    backup_retention_period: int
    backup_window: str
    maintenance_window: str
    monitoring_interval: int
    monitoring_role_arn: pulumi.Input[str]
    enabled_cloudwatch_logs_exports: list[str]
    performance_insights_enabled: bool
    performance_insights_kms_key_id: pulumi.Input[str]
    performance_insights_retention_period: int
    iam_database_authentication_enabled: bool
    auto_minor_version_upgrade: bool
    copy_tags_to_snapshot: bool
    deletion_protection: bool
    delete_automated_backups: bool
    apply_immediately: bool
    port: int


@dataclass(frozen=True)
class DatabaseArgs:
    settings: Settings
    kms_key_arn: pulumi.Input[str]
    subnet_group_name: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    availability_zones: Sequence[str]  # empty when the VPC is not ours: RDS then places replicas
    master_username: pulumi.Input[str]
    master_password: pulumi.Input[str]


class Database(pulumi.ComponentResource):
    instance: aws.rds.Instance
    replicas: list[aws.rds.Instance]
    identifier: pulumi.Output[str]
    address: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    port: pulumi.Output[int]
    name: pulumi.Output[str]
    replica_addresses: list[pulumi.Output[str]]
    parameter_group: aws.rds.ParameterGroup
    option_group: aws.rds.OptionGroup

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("appdb:database:Database", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)

        # Auto-named (no fixed `name`): a family change creates the new group before the old
        # one is deleted, so the instance never points at a group that is being deleted.
        self.parameter_group = aws.rds.ParameterGroup(
            f"{name}-params",
            family=s.parameter_group_family,
            description=f"{s.name_prefix}: MySQL parameters",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(
                    name=p.name, value=p.value, apply_method=p.apply_method
                )
                for p in s.db_parameters
            ],
            opts=child,
        )
        self.option_group = aws.rds.OptionGroup(
            f"{name}-options",
            engine_name="mysql",
            major_engine_version=s.major_engine_version,
            option_group_description=f"{s.name_prefix}: MariaDB audit plugin",
            options=[
                aws.rds.OptionGroupOptionArgs(
                    option_name="MARIADB_AUDIT_PLUGIN",
                    option_settings=[
                        aws.rds.OptionGroupOptionOptionSettingArgs(
                            name="SERVER_AUDIT_EVENTS", value=AUDIT_EVENTS
                        ),
                        aws.rds.OptionGroupOptionOptionSettingArgs(
                            name="SERVER_AUDIT_EXCL_USERS", value="rdsadmin"
                        ),
                    ],
                )
            ],
            opts=child,
        )

        partition = aws.get_partition(opts=pulumi.InvokeOptions(parent=self)).partition
        monitoring_role = aws.iam.Role(
            f"{name}-monitoring-role",
            description=f"{s.name_prefix}: RDS enhanced monitoring",
            assume_role_policy=service_trust_policy("monitoring.rds.amazonaws.com"),
            opts=child,
        )
        monitoring_policy = aws.iam.RolePolicyAttachment(
            f"{name}-monitoring-policy",
            role=monitoring_role.name,
            policy_arn=f"arn:{partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole",
            opts=child,
        )

        suffix = random.RandomId(
            f"{name}-identifier-suffix",
            byte_length=3,
            # Inputs whose change replaces the instance (and thus needs a new identifier).
            keepers={
                "engine": "mysql",
                "dbName": s.database_name,
                "username": s.master_username,
                "kmsKeyId": args.kms_key_arn,
            },
            opts=child,
        )
        primary_id = suffix.hex.apply(lambda h: f"{s.name_prefix}-{h}")
        replica_ids = [
            primary_id.apply(lambda p, n=n: f"{p}-replica-{n}")
            for n in range(1, s.read_replica_count + 1)
        ]

        # What the primary and the replicas have in common (a TypedDict, so the type checker
        # still checks every argument name and type against pulumi_aws).
        shared = _SharedInstanceArgs(
            storage_type="gp3",
            max_allocated_storage=s.max_allocated_storage,
            storage_encrypted=True,  # FSBP RDS.3
            kms_key_id=args.kms_key_arn,
            publicly_accessible=False,  # FSBP RDS.2
            vpc_security_group_ids=[args.security_group_id],
            parameter_group_name=self.parameter_group.name,
            option_group_name=self.option_group.name,
            ca_cert_identifier=s.ca_cert_identifier,
            backup_retention_period=s.backup_retention_days,  # FSBP RDS.11
            backup_window=s.backup_window,
            maintenance_window=s.maintenance_window,
            monitoring_interval=s.monitoring_interval_seconds,
            monitoring_role_arn=monitoring_role.arn,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),  # FSBP RDS.9
            performance_insights_enabled=True,
            performance_insights_kms_key_id=args.kms_key_arn,
            performance_insights_retention_period=s.performance_insights_retention_days,
            iam_database_authentication_enabled=True,  # FSBP RDS.10
            auto_minor_version_upgrade=True,  # FSBP RDS.13
            copy_tags_to_snapshot=True,  # FSBP RDS.17
            deletion_protection=s.deletion_protection,  # FSBP RDS.8
            delete_automated_backups=False,
            apply_immediately=s.apply_immediately,
            port=s.port,  # FSBP RDS.23 (non-default in production)
        )

        primary_logs = self._log_groups(f"{name}-primary", primary_id, args, child)
        self.instance = aws.rds.Instance(
            f"{name}-primary",
            identifier=primary_id,
            engine="mysql",
            engine_version=s.engine_version,
            instance_class=s.instance_class,
            allocated_storage=s.allocated_storage,
            db_name=s.database_name,
            username=args.master_username,
            password=args.master_password,
            db_subnet_group_name=args.subnet_group_name,
            multi_az=s.multi_az,  # FSBP RDS.5
            skip_final_snapshot=not s.final_snapshot,
            final_snapshot_identifier=primary_id.apply(lambda i: f"{i}-final")
            if s.final_snapshot
            else None,
            **shared,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*primary_logs, monitoring_policy],
                # The instance only ever receives the initial password; later changes happen
                # over SQL by the credential rotation, which keeps the secret in step.
                ignore_changes=["password"],
            ),
        )

        self.replicas = []
        zones = list(args.availability_zones)
        for n, replica_id in enumerate(replica_ids, start=1):
            logs = self._log_groups(f"{name}-replica-{n}", replica_id, args, child)
            self.replicas.append(
                aws.rds.Instance(
                    f"{name}-replica-{n}",
                    identifier=replica_id,
                    replicate_source_db=self.instance.identifier,
                    instance_class=s.replica_instance_class,
                    # One zone each, starting with the second (Multi-AZ primaries cannot be
                    # pinned to a zone, so the first is left to the primary's placement).
                    availability_zone=zones[n % len(zones)] if zones else None,
                    multi_az=False,
                    skip_final_snapshot=True,  # RDS takes no final snapshot of a replica
                    **shared,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[*logs, monitoring_policy]),
                )
            )

        self.identifier = self.instance.identifier
        self.address = self.instance.address
        self.endpoint = self.instance.endpoint
        self.port = self.instance.port
        self.name = pulumi.Output.from_input(s.database_name)
        self.replica_addresses = [r.address for r in self.replicas]
        self.register_outputs(
            {
                "identifier": self.identifier,
                "address": self.address,
                "port": self.port,
                "name": self.name,
                "replicaAddresses": self.replica_addresses,
            }
        )

    def _log_groups(
        self,
        name: str,
        identifier: pulumi.Output[str],
        args: DatabaseArgs,
        child: pulumi.ResourceOptions,
    ) -> list[aws.cloudwatch.LogGroup]:
        """The log groups RDS exports into, created first: encrypted, with a retention."""
        return [
            aws.cloudwatch.LogGroup(
                f"{name}-log-{log}",
                name=identifier.apply(lambda i, log=log: f"/aws/rds/instance/{i}/{log}"),
                kms_key_id=args.kms_key_arn,
                retention_in_days=args.settings.log_retention_days,
                opts=child,
            )
            for log in LOG_EXPORTS
        ]
