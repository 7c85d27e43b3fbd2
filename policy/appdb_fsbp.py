"""The AWS Foundational Security Best Practices controls this stack meets, as CrossGuard policies.

The same controls tests/test_infra_fsbp.py asserts on the offline plan, here enforced on every
real `pulumi preview` and `pulumi up` (`--policy-pack policy`). Each description starts with the
control id (https://docs.aws.amazon.com/securityhub/latest/userguide/fsbp-standard.html).
Controls the stack meets only in production (RDS.5, RDS.8, RDS.11, RDS.23, KMS.3; see the
README's "Deliberately not met") read the environment from the Environment tag the stack's AWS
provider sets on every resource (infra/tagging.py).

A value only known after apply (a key ARN on a first preview) makes the SDK report "can't run
policy during preview" as advisory instead of guessing; `pulumi up` checks it with the value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

PACK_NAME = "appdb-fsbp"

INSTANCE = "aws:rds/instance:Instance"
KMS_KEY = "aws:kms/key:Key"
VPC = "aws:ec2/vpc:Vpc"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
EVENT_SUBSCRIPTION = "aws:rds/eventSubscription:EventSubscription"
SNS_TOPIC = "aws:sns/topic:Topic"

LOG_EXPORTS = frozenset({"audit", "error", "general", "slowquery"})
DEFAULT_ADMIN_NAMES = frozenset({"admin", "administrator", "root", "mysql", "rdsadmin", "sa"})
MYSQL_DEFAULT_PORT = 3306
STANDARD_TAGS = ("Project", "Environment", "ManagedBy")
# FSBP RDS.20, RDS.21, RDS.22: source type -> the event categories the control requires.
REQUIRED_EVENT_CATEGORIES = {
    "db-instance": frozenset({"maintenance", "configuration change", "failure"}),
    "db-parameter-group": frozenset({"configuration change"}),
    "db-security-group": frozenset({"configuration change", "failure"}),
}


def _plain(value: Any) -> Any:
    """A secret's value (pulumi_policy.Secret), anything else as it is."""
    return getattr(value, "value", value)


def _tags(value: Any) -> Mapping[str, Any]:
    """Tags from a resource's `tags` or a provider's `defaultTags` (JSON text or an object)."""
    value = _plain(value)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if isinstance(value, Mapping) and "tags" in value and isinstance(value["tags"], Mapping):
        value = value["tags"]
    return value if isinstance(value, Mapping) else {}


def effective_tags(args: ResourceValidationArgs) -> dict[str, Any]:
    """The provider's default tags overlaid with the resource's own, as AWS applies them."""
    tags: dict[str, Any] = {}
    if args.provider is not None:
        tags.update(_tags(args.provider.props.get("defaultTags")))
    tags.update(_tags(args.props.get("tags")))
    return tags


def is_production(args: ResourceValidationArgs) -> bool:
    return effective_tags(args).get("Environment") == "production"


def _has(props: Mapping[str, Any], key: str) -> bool:
    """Whether the property is set, without reading it (it may be unknown during preview)."""
    return key in list(props)


ResourceCheck = Callable[[ResourceValidationArgs, ReportViolation], None]


def _for_types(*types: str) -> Callable[[ResourceCheck], ResourceCheck]:
    def decorate(check: ResourceCheck) -> ResourceCheck:
        def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
            if args.resource_type in types:
                check(args, report)

        return validate

    return decorate


# --- RDS ------------------------------------------------------------------------------------


@_for_types(INSTANCE)
def _encrypted_with_cmk(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if props.get("storageEncrypted") is not True:
        report("storageEncrypted must be true", None)
    # A same-region read replica takes its source's key and must not name one (AWS refuses the
    # parameter; infra/database.py): the source's check covers it.
    replica = _has(props, "replicateSourceDb")
    if not replica and not _has(props, "kmsKeyId"):
        report(
            "kmsKeyId must name the stack's customer-managed KMS key (not RDS's default key)", None
        )
    elif _has(props, "kmsKeyId") and "alias/aws/" in str(_plain(props.get("kmsKeyId"))):
        report("kmsKeyId names an AWS-managed key: use the stack's customer-managed key", None)


@_for_types(INSTANCE)
def _no_public_access(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.props.get("publiclyAccessible") is True:
        report("publiclyAccessible must be false", None)


@_for_types(INSTANCE)
def _deletion_protection(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if is_production(args) and args.props.get("deletionProtection") is not True:
        report("deletionProtection must be true in production", None)


@_for_types(INSTANCE)
def _backups(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if is_production(args):
        days = args.props.get("backupRetentionPeriod") or 0
        if days < 7:
            report(f"backupRetentionPeriod is {days}: production keeps at least 7 days", None)


@_for_types(INSTANCE)
def _iam_authentication(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.props.get("iamDatabaseAuthenticationEnabled") is not True:
        report("iamDatabaseAuthenticationEnabled must be true", None)


@_for_types(INSTANCE)
def _log_exports(args: ResourceValidationArgs, report: ReportViolation) -> None:
    exported = set(args.props.get("enabledCloudwatchLogsExports") or [])
    missing = sorted(LOG_EXPORTS - exported)
    if missing:
        report(f"enabledCloudwatchLogsExports lacks {', '.join(missing)}", None)


@_for_types(INSTANCE)
def _multi_az(args: ResourceValidationArgs, report: ReportViolation) -> None:
    # Read replicas are single-AZ by design (README); the control is met by the primary.
    primary = not _has(args.props, "replicateSourceDb")
    if is_production(args) and primary and args.props.get("multiAz") is not True:
        report("multiAz must be true on the production primary", None)


@_for_types(INSTANCE)
def _non_default_port(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if is_production(args):
        port = args.props.get("port") or MYSQL_DEFAULT_PORT
        if int(port) == MYSQL_DEFAULT_PORT:
            report(f"port is MySQL's default {MYSQL_DEFAULT_PORT}: production uses another", None)


@_for_types(INSTANCE)
def _custom_admin_name(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if _has(args.props, "replicateSourceDb"):
        return  # a replica has its source's users
    username = str(_plain(args.props.get("username") or "admin"))
    if username.lower() in DEFAULT_ADMIN_NAMES:
        report(f"username {username!r} is a well-known administrator name", None)


# --- KMS, SNS, tags ---------------------------------------------------------------------------


@_for_types(KMS_KEY)
def _key_rotation(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.props.get("enableKeyRotation") is not True:
        report("enableKeyRotation must be true", None)


@_for_types(KMS_KEY)
def _key_protected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if is_production(args) and not args.opts.protect:
        report("the production key must be `protect`ed: deleting it loses every backup", None)


@_for_types(SNS_TOPIC)
def _topic_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not _has(args.props, "kmsMasterKeyId"):
        report("kmsMasterKeyId must name the stack's customer-managed KMS key", None)


def _standard_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not args.resource_type.startswith("aws:"):
        return
    missing = [key for key in STANDARD_TAGS if not effective_tags(args).get(key)]
    if missing:
        report(f"missing tags {', '.join(missing)} (the stack's provider sets them)", None)


# --- whole-stack controls ---------------------------------------------------------------------


def _depends_on(resource: PolicyResource, target: PolicyResource) -> bool:
    dependencies: Iterable[PolicyResource] = [
        *resource.dependencies,
        *(d for deps in resource.property_dependencies.values() for d in deps),
    ]
    return any(d.urn == target.urn for d in dependencies)


def _vpc_flow_logs(args: StackValidationArgs, report: ReportViolation) -> None:
    vpcs = [r for r in args.resources if r.resource_type == VPC]
    if not vpcs:
        args.not_applicable("the stack creates no VPC (existing-VPC mode)")
    logs = [r for r in args.resources if r.resource_type == FLOW_LOG]
    for vpc in vpcs:
        if not any(_depends_on(f, vpc) and f.props.get("trafficType") == "ALL" for f in logs):
            report("the VPC has no flow log of ALL traffic", vpc.urn)


def _default_security_group_closed(args: StackValidationArgs, report: ReportViolation) -> None:
    vpcs = [r for r in args.resources if r.resource_type == VPC]
    if not vpcs:
        args.not_applicable("the stack creates no VPC (existing-VPC mode)")
    groups = [r for r in args.resources if r.resource_type == DEFAULT_SECURITY_GROUP]
    for vpc in vpcs:
        if not any(_depends_on(g, vpc) for g in groups):
            report("the VPC's default security group is not adopted (and emptied)", vpc.urn)
    for group in groups:
        if group.props.get("ingress") or group.props.get("egress"):
            report("the default security group must have no ingress and no egress rules", group.urn)


def _event_subscriptions(args: StackValidationArgs, report: ReportViolation) -> None:
    if not any(r.resource_type == INSTANCE for r in args.resources):
        args.not_applicable("no RDS instance in the stack")
    subscribed: dict[str, set[str]] = {}
    for subscription in args.resources:
        if subscription.resource_type != EVENT_SUBSCRIPTION:
            continue
        if subscription.props.get("enabled") is False:
            continue
        source_type = str(subscription.props.get("sourceType") or "")
        categories = subscription.props.get("eventCategories") or []
        subscribed.setdefault(source_type, set()).update(categories)
    for source_type, required in REQUIRED_EVENT_CATEGORIES.items():
        missing = sorted(required - subscribed.get(source_type, set()))
        if missing:
            report(f"no enabled {source_type} event subscription for: {', '.join(missing)}", None)


def policies() -> list[Policy]:
    mandatory, advisory = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY

    def resource(
        name: str, description: str, validate: ResourceCheck, level: EnforcementLevel = mandatory
    ) -> Policy:
        return ResourceValidationPolicy(
            name=name, description=description, validate=validate, enforcement_level=level
        )

    return [
        resource(
            "rds-encrypted-with-cmk",
            "FSBP RDS.3: RDS instances are encrypted at rest with the stack's customer-managed "
            "KMS key (their snapshots with it too, RDS.4).",
            _encrypted_with_cmk,
        ),
        resource(
            "rds-no-public-access",
            "FSBP RDS.2: RDS instances prohibit public access.",
            _no_public_access,
        ),
        resource(
            "rds-deletion-protection-in-production",
            "FSBP RDS.8: production RDS instances have deletion protection.",
            _deletion_protection,
        ),
        resource(
            "rds-backups-in-production",
            "FSBP RDS.11: production RDS instances keep automated backups for at least 7 days.",
            _backups,
        ),
        resource(
            "rds-iam-authentication",
            "FSBP RDS.10: IAM database authentication is enabled on RDS instances.",
            _iam_authentication,
        ),
        resource(
            "rds-log-exports",
            "FSBP RDS.9: RDS instances publish the audit, error, general and slow query logs "
            "to CloudWatch Logs.",
            _log_exports,
        ),
        resource(
            "rds-multi-az-in-production",
            "FSBP RDS.5: the production primary runs in multiple Availability Zones.",
            _multi_az,
        ),
        resource(
            "rds-non-default-port-in-production",
            "FSBP RDS.23: production RDS instances do not listen on the engine's default port.",
            _non_default_port,
        ),
        resource(
            "rds-custom-admin-username",
            "FSBP RDS.25: the RDS master user is not a well-known administrator name.",
            _custom_admin_name,
        ),
        resource(
            "kms-key-rotation",
            "FSBP KMS.4: customer-managed KMS keys rotate automatically.",
            _key_rotation,
        ),
        resource(
            "kms-key-protected-in-production",
            "FSBP KMS.3: the production KMS key cannot be deleted unintentionally (Pulumi "
            "`protect`).",
            _key_protected,
        ),
        resource(
            "sns-topic-encrypted",
            "FSBP SNS.1: SNS topics are encrypted at rest with the stack's KMS key.",
            _topic_encrypted,
        ),
        resource(
            "standard-tags",
            "AWS resource tagging standard (Tagging.1): every AWS resource carries the Project, "
            "Environment and ManagedBy tags.",
            _standard_tags,
            advisory,
        ),
        StackValidationPolicy(
            name="vpc-flow-logs",
            description="FSBP EC2.6: every VPC the stack creates has a flow log of all traffic.",
            validate=_vpc_flow_logs,
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="default-security-group-closed",
            description="FSBP EC2.2: the default security group of every VPC the stack creates "
            "allows no inbound and no outbound traffic.",
            validate=_default_security_group_closed,
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="rds-event-subscriptions",
            description="FSBP RDS.20, RDS.21, RDS.22: RDS event subscriptions cover critical "
            "instance, parameter group and security group events.",
            validate=_event_subscriptions,
            enforcement_level=mandatory,
        ),
    ]
