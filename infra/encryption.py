"""One customer-managed KMS key per environment for RDS storage, Performance Insights,
Secrets Manager and CloudWatch Logs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class EncryptionArgs:
    project: str
    environment: str
    region: str
    deletion_window_days: int
    # Pulumi refuses to delete a protected key (FSBP KMS.3); AWS has no deletion protection for
    # keys, and losing this one makes every backup and snapshot unreadable.
    protect: bool


def key_policy(account_id: str, partition: str, region: str) -> str:
    """What the key policy allows, statement by statement:

    - AccountAdministration: the account root, i.e. every IAM principal of this account whose
      own IAM policy allows it, may do anything with the key (kms:*), using it directly
      included. This is the default key policy's statement; it is what makes IAM policies
      govern the key, so the restriction to "administrators" is made in IAM, not here
      (https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html).
    - UseThroughRdsAndSecretsManager: the same principals may use the key through RDS or Secrets
      Manager in this region, called from this account. It adds nothing to the first statement
      today; it documents the intended use and stays right if AccountAdministration is ever
      narrowed to key administration.
    - CloudWatchLogsOfThisAccount: the regional CloudWatch Logs service may encrypt and decrypt
      with it for log groups of this account only.

    No statement names a wildcard principal (FSBP KMS.5)."""
    account_root = f"arn:{partition}:iam::{account_id}:root"
    use_key = [
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
        "kms:DescribeKey",
    ]
    statements = [
        {
            "Sid": "AccountAdministration",
            "Effect": "Allow",
            "Principal": {"AWS": account_root},
            "Action": "kms:*",
            "Resource": "*",
        },
        {
            "Sid": "UseThroughRdsAndSecretsManager",
            "Effect": "Allow",
            "Principal": {"AWS": account_root},
            "Action": [*use_key, "kms:CreateGrant", "kms:ListGrants"],
            "Resource": "*",
            "Condition": {
                "StringEquals": {
                    "kms:CallerAccount": account_id,
                    "kms:ViaService": [
                        f"rds.{region}.amazonaws.com",
                        f"secretsmanager.{region}.amazonaws.com",
                    ],
                }
            },
        },
        {
            "Sid": "CloudWatchLogsOfThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": f"logs.{region}.amazonaws.com"},
            "Action": use_key,
            "Resource": "*",
            "Condition": {
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": (
                        f"arn:{partition}:logs:{region}:{account_id}:log-group:*"
                    )
                }
            },
        },
        *(
            {
                # The alarm topic is encrypted with this key (infra/monitoring.py): the services
                # publishing to it need the data key; the topic's policy limits them to this
                # account. https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html
                "Sid": sid,
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
            }
            for sid, service in (
                ("CloudWatchAlarmsPublishToTheAlarmTopic", "cloudwatch.amazonaws.com"),
                ("RdsEventsPublishToTheAlarmTopic", "events.rds.amazonaws.com"),
            )
        ),
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


class Encryption(pulumi.ComponentResource):
    """The environment's customer-managed KMS key and its alias `alias/<project>-<env>-rds`."""

    key: aws.kms.Key
    key_arn: pulumi.Output[str]
    alias_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: EncryptionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("appdb:encryption:Encryption", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOptions(parent=self)
        account_id = aws.get_caller_identity(opts=invoke).account_id
        partition = aws.get_partition(opts=invoke).partition

        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"{args.project} {args.environment}: RDS, Secrets Manager and logs",
            enable_key_rotation=True,  # FSBP KMS.4 (yearly automatic rotation)
            deletion_window_in_days=args.deletion_window_days,
            key_usage="ENCRYPT_DECRYPT",
            customer_master_key_spec="SYMMETRIC_DEFAULT",
            policy=key_policy(account_id, partition, args.region),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        alias = aws.kms.Alias(
            f"{name}-alias",
            name=f"alias/{args.project}-{args.environment}-rds",
            target_key_id=self.key.key_id,
            opts=child,
        )
        self.key_arn = self.key.arn
        self.alias_name = alias.name
        self.register_outputs({"keyArn": self.key_arn, "aliasName": self.alias_name})
