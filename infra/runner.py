"""`appdb:runner:DatabaseRunner`: the in-VPC function that does the database work of `pulumi up`.

The database sits in private subnets with no route out; the machine running `pulumi up` (a
GitHub-hosted runner, a laptop) can reach AWS's APIs but never the database. So the schema
migrations, the master rotation and the application users run in a Lambda function placed in
the database's subnets, which the providers invoke through the Lambda API:

    runner --Lambda Invoke--> function (private subnets) --TLS, DB port--> database
                                  '--HTTPS--> Secrets Manager interface endpoint (private DNS)

- The function: a current Python runtime on arm64, the archive built from the project's files
  (vpcrunner.archive), 15 minutes, reserved concurrency 1 (one invocation at a time: migrations
  are serialised by their lock anyway, and a second invocation would only wait for it).
- Its security group: egress to the database group on the database port and to the endpoint
  on 443, nothing else; the database group admits it on the database port; the endpoint's
  group admits 443 from the function only.
- The Secrets Manager endpoint: interface type, private DNS (so boto3's default endpoint name
  resolves to it; needs the VPC's DNS support and DNS host names, which the stack's VPC has:
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVpcEndpoint.html). It is the
  function's only way to an AWS API. Logs need none: Lambda delivers a function's output to
  CloudWatch Logs itself, also for a function in a VPC
  (https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html).
- Its role: the VPC-access execution policy (network interfaces, logs), and an inline policy
  for the stack's own secrets, by ARN, and the stack's key only through Secrets Manager
  (`kms:ViaService`). The key policy already lets IAM policies of this account grant its use
  (infra/encryption.py), so the key policy needs no change. More secrets (the application
  users') are granted with `grant_secrets` where they are created.
- Its log group: encrypted with the stack's key (the key policy admits CloudWatch Logs of this
  account), retention from config.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.iam import service_trust_policy
from vpcrunner.archive import HANDLER, RUNTIME, build_archive

TIMEOUT_SECONDS = 900  # Lambda's maximum
MEMORY_MB = 512  # CPU scales with memory; TLS handshakes and PyMySQL are CPU-bound
VPC_ACCESS_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
SECRET_ACTIONS = [
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
]
# Secrets Manager decrypts and encrypts (a new version) with the key on the caller's behalf:
# https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html
KEY_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"]


@dataclass(frozen=True)
class RunnerArgs:
    name_prefix: str  # "<project>-<environment>"
    region: str
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    database_security_group_id: pulumi.Input[str]
    database_port: int
    kms_key_arn: pulumi.Input[str]
    secret_arns: Sequence[pulumi.Input[str]]  # the secrets known now (the master's)
    log_retention_days: int
    project_dir: Path
    migrations_location: str
    ca_bundle: str


def secrets_policy(region: str, secret_arns: Sequence[str], key_arn: str | None) -> str:
    """An inline policy for the stack's secrets by ARN (and, with `key_arn`, its key through
    Secrets Manager only)."""
    statements: list[dict] = [
        {
            "Sid": "StackSecrets",
            "Effect": "Allow",
            "Action": SECRET_ACTIONS,
            "Resource": sorted(secret_arns),
        }
    ]
    if key_arn is not None:
        statements.append(
            {
                "Sid": "StackKeyThroughSecretsManager",
                "Effect": "Allow",
                "Action": KEY_ACTIONS,
                "Resource": key_arn,
                "Condition": {
                    "StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}
                },
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


class DatabaseRunner(pulumi.ComponentResource):
    function: aws.lambda_.Function
    function_name: pulumi.Output[str]
    security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: RunnerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("appdb:runner:DatabaseRunner", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self._name = name
        self._region = args.region

        function_sg = aws.ec2.SecurityGroup(
            f"{name}-function-sg",
            description=f"{args.name_prefix}: the database runner function",
            vpc_id=args.vpc_id,
            opts=child,
        )
        endpoint_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoint-sg",
            description=f"{args.name_prefix}: Secrets Manager endpoint, for the runner function",
            vpc_id=args.vpc_id,
            opts=child,
        )
        # Each rule names a security group on both sides, never an address range.
        rules = (
            ("db-from-function", args.database_security_group_id, function_sg.id, "ingress",
             args.database_port, "MySQL from the database runner function"),
            ("function-to-db", function_sg.id, args.database_security_group_id, "egress",
             args.database_port, "MySQL to the database security group"),
            ("function-to-endpoint", function_sg.id, endpoint_sg.id, "egress",
             443, "HTTPS to the Secrets Manager endpoint"),
            ("endpoint-from-function", endpoint_sg.id, function_sg.id, "ingress",
             443, "HTTPS from the database runner function only"),
        )  # fmt: skip
        for rule, group, other, direction, port, description in rules:
            kind = (
                aws.vpc.SecurityGroupIngressRule
                if direction == "ingress"
                else aws.vpc.SecurityGroupEgressRule
            )
            kind(
                f"{name}-{rule}",
                security_group_id=group,
                referenced_security_group_id=other,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                description=description,
                opts=child,
            )
        endpoint = aws.ec2.VpcEndpoint(
            f"{name}-secretsmanager-endpoint",
            vpc_id=args.vpc_id,
            service_name=f"com.amazonaws.{args.region}.secretsmanager",
            vpc_endpoint_type="Interface",
            private_dns_enabled=True,
            subnet_ids=args.subnet_ids,
            security_group_ids=[endpoint_sg.id],
            tags={"Name": f"{args.name_prefix}-secretsmanager"},
            opts=child,
        )

        account_id = aws.get_caller_identity(opts=pulumi.InvokeOptions(parent=self)).account_id
        self.role = aws.iam.Role(
            f"{name}-role",
            description=f"{args.name_prefix}: the database runner function",
            # Only on behalf of this account (no confused deputy).
            assume_role_policy=service_trust_policy("lambda.amazonaws.com", account_id),
            opts=child,
        )
        vpc_access = aws.iam.RolePolicyAttachment(
            f"{name}-vpc-access", role=self.role.name, policy_arn=VPC_ACCESS_POLICY, opts=child
        )
        permissions = aws.iam.RolePolicy(
            f"{name}-permissions",
            role=self.role.id,
            policy=pulumi.Output.all(args.kms_key_arn, *args.secret_arns).apply(
                lambda values: secrets_policy(args.region, values[1:], values[0])
            ),
            opts=child,
        )
        function_name = f"{args.name_prefix}-db-runner"
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/lambda/{function_name}",
            kms_key_id=args.kms_key_arn,
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        archive = build_archive(
            args.project_dir,
            args.project_dir / "build",
            migrations=args.migrations_location,
            ca_bundle=args.ca_bundle,
        )
        self.function = aws.lambda_.Function(
            f"{name}-function",
            name=function_name,
            description=f"{args.name_prefix}: schema migrations and credential rotation",
            role=self.role.arn,
            runtime=RUNTIME,
            architectures=["arm64"],
            handler=HANDLER,
            code=pulumi.FileArchive(str(archive.path.relative_to(args.project_dir))),
            source_code_hash=archive.code_sha256,
            timeout=TIMEOUT_SECONDS,
            memory_size=MEMORY_MB,
            reserved_concurrent_executions=1,
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(
                subnet_ids=args.subnet_ids, security_group_ids=[function_sg.id]
            ),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="Text", log_group=log_group.name
            ),
            # The role must be able to create network interfaces before Lambda creates the
            # function's; the endpoint must exist before the function first calls it.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[vpc_access, permissions, log_group, endpoint]
            ),
        )
        self.function_name = self.function.name
        self.security_group_id = function_sg.id
        self.register_outputs(
            {
                "functionName": self.function_name,
                "functionArn": self.function.arn,
                "securityGroupId": self.security_group_id,
                "secretsManagerEndpointId": endpoint.id,
                "archiveSha256": archive.sha256,
            }
        )

    def grant_secrets(
        self, name: str, secret_arns: Sequence[pulumi.Input[str]], parent: pulumi.Resource
    ) -> aws.iam.RolePolicy:
        """Let the function use more of the stack's secrets (created after it), by ARN."""
        return aws.iam.RolePolicy(
            name,
            role=self.role.id,
            policy=pulumi.Output.all(*secret_arns).apply(
                lambda arns: secrets_policy(self._region, arns, None)
            ),
            opts=pulumi.ResourceOptions(parent=parent),
        )
