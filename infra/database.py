"""RDS MySQL: parameter and option groups, log groups, monitoring role, the primary and its
read replicas.

Engine versions: the config names a major version ("8.4"); RDS picks the minor and upgrades it
(auto_minor_version_upgrade, FSBP RDS.13), and the provider keeps the configured prefix in state
(see infra/settings.py, MAJOR_VERSIONS). Major upgrades are a config change that works:
- without read replicas, the primary uses RDS Blue/Green deployments (`blue_green_update`): a
  green copy on the new version, a switchover (writes blocked, typically under a minute), and the
  provider deletes the old instance. The provider cannot carry separately declared replicas
  along (hashicorp/terraform-provider-aws#33702; its docs: "cannot be used with DB Instances
  with replicas"), so with replicas it stays off;
- with replicas, in order: replicas first (appdb:replicaEngineVersion), then the primary
  (appdb:engineVersion). MySQL replicates only from an older or equal source to a replica
  (https://dev.mysql.com/doc/refman/8.4/en/replication-compatibility.html), RDS asks that read
  replicas be upgraded before their source, and the provider does not order it itself (its
  update path: "we could loop through replicas at this point to update them first"). The
  replicas have their own parameter and option groups, so the new major's groups reach them
  without touching the primary's. `allow_major_version_upgrade` lets either step through.

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
    publicly_accessible: bool
    vpc_security_group_ids: list[pulumi.Input[str]]
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
    allow_major_version_upgrade: bool
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
    replica_groups: tuple[aws.rds.ParameterGroup, aws.rds.OptionGroup] | None

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("appdb:database:Database", name, None, opts)
        s = self._settings = args.settings
        child = pulumi.ResourceOptions(parent=self)

        self.parameter_group, self.option_group = self._groups(name, s.engine_version, child)
        # The replicas' own groups, on the replicas' major version: during an ordered major
        # upgrade they move to the new major's groups while the primary keeps its own.
        self.replica_groups = (
            self._groups(f"{name}-replica", s.replica_engine_version, child)
            if s.read_replica_count
            else None
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
            publicly_accessible=False,  # FSBP RDS.2
            vpc_security_group_ids=[args.security_group_id],
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
            allow_major_version_upgrade=True,  # a major version change in config goes through
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
            kms_key_id=args.kms_key_arn,
            parameter_group_name=self.parameter_group.name,
            option_group_name=self.option_group.name,
            instance_class=s.instance_class,
            allocated_storage=s.allocated_storage,
            db_name=s.database_name,
            username=args.master_username,
            # A Pulumi secret, encrypted in state by the stack's secrets provider. pulumi-aws 7's
            # write-only `password_wo` would not keep it out: the bridge still writes a write-only
            # field's value to the state's inputs, as a secret
            # (pulumi/pulumi-terraform-bridge#3201, https://www.pulumi.com/docs/iac/concepts/
            # secrets/write-only-fields/), and the RandomPassword holds it in state anyway. So the
            # plain argument stays; ignore_changes below keeps rotation off this path.
            password=args.master_password,
            db_subnet_group_name=args.subnet_group_name,
            multi_az=s.multi_az,  # FSBP RDS.5
            # Blue/Green for major upgrades where the provider supports it: no read replicas.
            blue_green_update=aws.rds.InstanceBlueGreenUpdateArgs(
                enabled=s.read_replica_count == 0
            ),
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
                # With deletion protection (production), Pulumi refuses to delete the instance
                # too: lifting it takes appdb:deletionProtection=false and an update first.
                protect=s.deletion_protection,
            ),
        )

        self.replicas = []
        zones = list(args.availability_zones)
        replica_params, replica_options = self.replica_groups or (None, None)
        for n, replica_id in enumerate(replica_ids, start=1):
            logs = self._log_groups(f"{name}-replica-{n}", replica_id, args, child)
            self.replicas.append(
                aws.rds.Instance(
                    f"{name}-replica-{n}",
                    identifier=replica_id,
                    replicate_source_db=self.instance.identifier,
                    # No kms_key_id: a same-region replica is always encrypted with its source's
                    # key, and AWS answers a KMS key here with "InvalidParameterCombination: Your
                    # request does not require the KMS key parameter"
                    # (cloudposse/terraform-aws-rds-replica#5). The provider sends kms_key_id
                    # whenever it is set (SourceRegion only for an ARN source), and the
                    # CreateDBInstanceReadReplica reference says not to send it:
                    # https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstanceReadReplica.html
                    engine_version=s.replica_engine_version,
                    parameter_group_name=replica_params.name if replica_params else None,
                    option_group_name=replica_options.name if replica_options else None,
                    instance_class=s.replica_instance_class,
                    # One zone each, starting with the second (Multi-AZ primaries cannot be
                    # pinned to a zone, so the first is left to the primary's placement).
                    availability_zone=zones[n % len(zones)] if zones else None,
                    multi_az=False,
                    skip_final_snapshot=True,  # RDS takes no final snapshot of a replica
                    **shared,
                    opts=pulumi.ResourceOptions(
                        parent=self,
                        depends_on=[*logs, monitoring_policy],
                        protect=s.deletion_protection,
                    ),
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

    def _groups(
        self, name: str, major: str, child: pulumi.ResourceOptions
    ) -> tuple[aws.rds.ParameterGroup, aws.rds.OptionGroup]:
        """The parameter and option groups of one major version (`mysql<major>`).

        Auto-named (no fixed `name`): a family change creates the new group before the old one
        is deleted, so an instance never points at a group that is being deleted."""
        s = self._settings
        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            family=f"mysql{major}",
            description=f"{s.name_prefix}: MySQL parameters",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(
                    name=p.name, value=p.value, apply_method=p.apply_method
                )
                for p in s.db_parameters
            ],
            opts=child,
        )
        # The MariaDB Audit Plugin is offered on every RDS for MySQL 8.0 and 8.4 version, with the
        # same settings (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/
        # Appendix.MySQL.Options.AuditPlugin.html).
        options = aws.rds.OptionGroup(
            f"{name}-options",
            engine_name="mysql",
            major_engine_version=major,
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
        return parameters, options

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
