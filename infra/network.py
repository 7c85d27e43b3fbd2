"""The database's network: a VPC with private subnets only, security groups and flow logs.

Given an existing VPC (appdb:existingVpcId with appdb:existingSubnetIds) no network is created:
only the database's security groups and subnet group are placed in it.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import service_trust_policy


@dataclass(frozen=True)
class NetworkArgs:
    name_prefix: str  # "<project>-<environment>"
    vpc_cidr: str
    # regular zones of the region (infra/preflight.py checked them); empty with an existing VPC
    availability_zones: Sequence[str]
    existing_vpc_id: str | None
    existing_subnet_ids: tuple[str, ...]
    database_port: int
    flow_log_retention_days: int
    kms_key_arn: pulumi.Input[str]


def subnet_cidrs(vpc_cidr: str, count: int) -> list[str]:
    """The first `count` of 16 equal blocks of the VPC range (a /16 gives /20 subnets)."""
    network = ipaddress.IPv4Network(vpc_cidr)
    blocks = network.subnets(prefixlen_diff=4)
    return [str(next(blocks)) for _ in range(count)]


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    subnet_ids: pulumi.Output[list[str]]
    availability_zones: list[str]
    db_subnet_group_name: pulumi.Output[str]
    app_security_group_id: pulumi.Output[str]
    db_security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("appdb:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        if args.existing_vpc_id is None:
            vpc_id, subnet_ids, zones = self._create_vpc(name, args, child)
        else:
            vpc_id = pulumi.Output.from_input(args.existing_vpc_id)
            subnet_ids = [pulumi.Output.from_input(s) for s in args.existing_subnet_ids]
            zones = []
        self.vpc_id = vpc_id
        self.subnet_ids = pulumi.Output.all(*subnet_ids).apply(list)
        self.availability_zones = zones

        subnet_group = aws.rds.SubnetGroup(
            f"{name}-db-subnets",
            description=f"{args.name_prefix}: private database subnets",
            subnet_ids=subnet_ids,
            opts=child,
        )

        # The application's group: members may reach the database, nothing else is opened here
        # (EC2.18/EC2.19: no unrestricted ingress anywhere).
        app_sg = aws.ec2.SecurityGroup(
            f"{name}-app-sg",
            description=f"{args.name_prefix}: application clients of the database",
            vpc_id=vpc_id,
            opts=child,
        )
        db_sg = aws.ec2.SecurityGroup(
            f"{name}-db-sg",
            description=f"{args.name_prefix}: RDS MySQL, reachable from the application group only",
            vpc_id=vpc_id,
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-db-from-app",
            security_group_id=db_sg.id,
            referenced_security_group_id=app_sg.id,
            ip_protocol="tcp",
            from_port=args.database_port,
            to_port=args.database_port,
            description="MySQL from the application security group",
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-app-to-db",
            security_group_id=app_sg.id,
            referenced_security_group_id=db_sg.id,
            ip_protocol="tcp",
            from_port=args.database_port,
            to_port=args.database_port,
            description="MySQL to the database security group",
            opts=child,
        )

        self.db_subnet_group_name = subnet_group.name
        self.app_security_group_id = app_sg.id
        self.db_security_group_id = db_sg.id
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "subnetIds": self.subnet_ids,
                "dbSubnetGroupName": self.db_subnet_group_name,
                "appSecurityGroupId": self.app_security_group_id,
                "dbSecurityGroupId": self.db_security_group_id,
            }
        )

    def _create_vpc(
        self, name: str, args: NetworkArgs, child: pulumi.ResourceOptions
    ) -> tuple[pulumi.Output[str], list[pulumi.Output[str]], list[str]]:
        zones = list(args.availability_zones)
        if len(zones) < 2:
            raise ValueError(f"a VPC of this stack needs at least 2 availability zones: {zones}")

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={"Name": f"{args.name_prefix}-vpc"},
            opts=child,
        )
        # Adopting the default security group removes all its rules (FSBP EC2.2).
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.id,
            ingress=[],
            egress=[],
            tags={"Name": f"{args.name_prefix}-default-unused"},
            opts=child,
        )
        # Private subnets only: their route table has the local route alone (no internet
        # gateway exists) and nothing launched in them gets a public IP (FSBP EC2.15).
        route_table = aws.ec2.RouteTable(
            f"{name}-private-rt",
            vpc_id=vpc.id,
            tags={"Name": f"{args.name_prefix}-private"},
            opts=child,
        )
        subnet_ids: list[pulumi.Output[str]] = []
        for index, (zone, cidr) in enumerate(
            zip(zones, subnet_cidrs(args.vpc_cidr, len(zones)), strict=True)
        ):
            subnet = aws.ec2.Subnet(
                f"{name}-private-{index + 1}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={"Name": f"{args.name_prefix}-private-{zone}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{index + 1}-rt",
                subnet_id=subnet.id,
                route_table_id=route_table.id,
                opts=child,
            )
            subnet_ids.append(subnet.id)

        self._flow_logs(name, args, vpc, child)
        return vpc.id, subnet_ids, zones

    def _flow_logs(
        self, name: str, args: NetworkArgs, vpc: aws.ec2.Vpc, child: pulumi.ResourceOptions
    ) -> None:
        """All VPC traffic logged to a KMS-encrypted log group (FSBP EC2.6)."""
        account_id = aws.get_caller_identity(opts=pulumi.InvokeOptions(parent=self)).account_id
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"/aws/vpc/flow-logs/{args.name_prefix}",
            kms_key_id=args.kms_key_arn,
            retention_in_days=args.flow_log_retention_days,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-flow-logs-role",
            description=f"{args.name_prefix}: VPC flow logs delivery",
            # Only on behalf of this account (no confused deputy).
            assume_role_policy=service_trust_policy("vpc-flow-logs.amazonaws.com", account_id),
            opts=child,
        )
        delivery = aws.iam.RolePolicy(
            f"{name}-flow-logs-delivery",
            role=role.id,
            policy=log_group.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": [
                                    "logs:CreateLogStream",
                                    "logs:PutLogEvents",
                                    "logs:DescribeLogGroups",
                                    "logs:DescribeLogStreams",
                                ],
                                "Resource": [arn, f"{arn}:*"],
                            }
                        ],
                    },
                    sort_keys=True,
                )
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            # The role's permissions come from a separate policy resource: without this the flow
            # log can be created before the role may write, and its first deliveries fail.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[delivery]),
        )
