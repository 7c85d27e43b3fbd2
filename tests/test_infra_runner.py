"""The in-VPC runner under the mock engine, for both stacks: the real program with the real stack
files (planner.run_plan, shared with the other infra tests).

`pulumi up` must work from a machine outside the VPC: the database work runs in a Lambda
function in the database's private subnets, which reaches Secrets Manager through an interface
endpoint, with no new way into the network (issue 9).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from infra_plans import kms_key_arn, plan_of, policy

from planner import Plan, PlanError, PlannedResource, run_plan
from planner.engine import mock_resource

STACKS = ("staging", "production")
FUNCTION = "aws:lambda/function:Function"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
DYNAMIC = (
    "pulumi-python:dynamic/appdb:SchemaMigrations",
    "pulumi-python:dynamic/appdb:MasterPasswordRotation",
    "pulumi-python:dynamic/appdb:ApplicationUsers",
)


def only(plan: Plan, type_token: str) -> PlannedResource:
    (resource,) = plan.of_type(type_token)
    return resource


def security_group_id(plan: Plan, name: str) -> str:
    """The id the mock engine gives the security group `name` (derived from its name)."""
    group = plan.by_name(name)
    assert group.type == "aws:ec2/securityGroup:SecurityGroup"
    group_id, _ = mock_resource(group.type, name, {}, "us-east-1", f"appdb/{plan.stack}")
    return group_id


@pytest.mark.parametrize("stack", STACKS)
def test_the_function_runs_in_the_private_subnets_with_its_own_group(stack: str) -> None:
    plan = plan_of(stack)
    function = only(plan, FUNCTION)
    assert function.inputs["runtime"] == "python3.13"
    assert function.inputs["architectures"] == ["arm64"]
    assert function.inputs["reservedConcurrentExecutions"] == 1
    assert function.inputs["timeout"] == 900  # Lambda's limit: 15 minutes
    assert function.inputs["handler"] == "vpcrunner.handler.handle"
    vpc = function.inputs["vpcConfig"]
    assert sorted(vpc["subnetIds"]) == sorted(plan.outputs["subnetIds"])
    assert vpc["securityGroupIds"] == [security_group_id(plan, "runner-function-sg")]
    # The code is the archive the program built, and its hash is what Lambda compares.
    assert function.inputs["code"]["path"].endswith(".zip")
    assert function.inputs["sourceCodeHash"]


@pytest.mark.parametrize("stack", STACKS)
def test_secrets_manager_is_reached_through_an_interface_endpoint_with_private_dns(
    stack: str,
) -> None:
    plan = plan_of(stack)
    endpoint = only(plan, ENDPOINT)
    assert endpoint.inputs["serviceName"] == "com.amazonaws.us-east-1.secretsmanager"
    assert endpoint.inputs["vpcEndpointType"] == "Interface"
    assert endpoint.inputs["privateDnsEnabled"] is True
    assert sorted(endpoint.inputs["subnetIds"]) == sorted(plan.outputs["subnetIds"])
    endpoint_group = security_group_id(plan, "runner-endpoint-sg")
    assert endpoint.inputs["securityGroupIds"] == [endpoint_group]
    # Private DNS needs both DNS attributes of the VPC the stack creates.
    (vpc,) = plan.of_type("aws:ec2/vpc:Vpc")
    assert vpc.inputs["enableDnsSupport"] is True and vpc.inputs["enableDnsHostnames"] is True


@pytest.mark.parametrize("stack", STACKS)
def test_only_the_function_is_admitted_to_the_endpoint_and_the_database_by_it(stack: str) -> None:
    plan = plan_of(stack)
    function_group = security_group_id(plan, "runner-function-sg")
    endpoint_group = security_group_id(plan, "runner-endpoint-sg")
    port = plan.outputs["port"]
    rules = {r.name: r.inputs for r in plan.of_type(INGRESS)}
    into_endpoint = [r for r in rules.values() if r["securityGroupId"] == endpoint_group]
    assert into_endpoint == [
        {
            **into_endpoint[0],
            "referencedSecurityGroupId": function_group,
            "ipProtocol": "tcp",
            "fromPort": 443,
            "toPort": 443,
        }
    ]
    database_group = plan.outputs["databaseSecurityGroupId"]
    into_database = {
        r["referencedSecurityGroupId"]
        for r in rules.values()
        if r["securityGroupId"] == database_group and r["fromPort"] == port == r["toPort"]
    }
    assert function_group in into_database
    # No rule anywhere admits an address range: every ingress names a security group.
    assert all("cidrIpv4" not in r and "cidrIpv6" not in r for r in rules.values())
    egress = [
        r.inputs for r in plan.of_type(EGRESS) if r.inputs["securityGroupId"] == function_group
    ]
    assert sorted((r["referencedSecurityGroupId"], r["fromPort"]) for r in egress) == sorted(
        [(database_group, port), (endpoint_group, 443)]
    )


@pytest.mark.parametrize("stack", STACKS)
def test_no_new_way_into_or_out_of_the_network(stack: str) -> None:
    plan = plan_of(stack)
    for type_token in (
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/natGateway:NatGateway",
        "aws:ec2/eip:Eip",
        "aws:ec2/route:Route",
        "aws:ec2/egressOnlyInternetGateway:EgressOnlyInternetGateway",
    ):
        assert plan.of_type(type_token) == [], type_token
    for table in plan.of_type("aws:ec2/routeTable:RouteTable"):
        assert not table.inputs.get("routes")
    assert only(plan, FUNCTION).inputs.get("functionUrl") is None


@pytest.mark.parametrize("stack", STACKS)
def test_the_database_work_names_the_function_and_carries_no_password(stack: str) -> None:
    plan = plan_of(stack)
    function = only(plan, FUNCTION)
    for type_token in DYNAMIC:
        resource = only(plan, type_token)
        assert resource.inputs["runner"] == function.inputs["name"], type_token
        assert function.urn in resource.options["depends_on"], type_token
        passwords = [k for k in resource.inputs if "password" in k.lower()]
        assert passwords in ([], ["password_length"]), type_token
        secret_inputs = [k for k, v in resource.inputs.items() if v == "[secret]"]
        assert secret_inputs == ["__provider"] or secret_inputs == [], type_token


@pytest.mark.parametrize("stack", STACKS)
def test_the_role_may_use_the_stacks_secrets_and_key_only(stack: str) -> None:
    plan = plan_of(stack)
    function = only(plan, FUNCTION)
    role = plan.by_name("runner-role")
    trust = policy(role, "assumeRolePolicy")
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    attachments = [
        r.inputs["policyArn"]
        for r in plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if role.urn in r.options["depends_on"]
    ]
    assert attachments == ["arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"]
    # The master's secret and the key with the function; the application users' secrets where
    # they are created. Together: exactly the stack's three secrets, by ARN.
    documents = [
        policy(r)
        for r in plan.of_type("aws:iam/rolePolicy:RolePolicy")
        if role.urn in r.options["depends_on"]
    ]
    statements = [s for document in documents for s in document["Statement"]]
    granted = sorted(arn for s in statements if s["Sid"] == "StackSecrets" for arn in s["Resource"])
    assert granted == sorted(
        [plan.outputs["secretArn"], plan.outputs["appSecretArn"], plan.outputs["readonlySecretArn"]]
    )
    for s in statements:
        if s["Sid"] == "StackSecrets":
            assert set(s["Action"]) == {
                "secretsmanager:DescribeSecret",
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
                "secretsmanager:UpdateSecretVersionStage",
            }
    (key,) = [s for s in statements if s["Sid"] == "StackKeyThroughSecretsManager"]
    assert key["Resource"] == kms_key_arn(plan)
    assert set(key["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey"}
    assert key["Condition"] == {
        "StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}
    }
    assert {s["Sid"] for s in statements} == {"StackSecrets", "StackKeyThroughSecretsManager"}
    assert "*" not in json.dumps([s["Resource"] for s in statements])
    assert role.urn in function.options["depends_on"]
    # The application users' resource waits for its grant.
    users = only(plan, "pulumi-python:dynamic/appdb:ApplicationUsers")
    grant = plan.by_name("application-users-runner-access")
    assert grant.urn in users.options["depends_on"]


@pytest.mark.parametrize(("stack", "days"), [("staging", 30), ("production", 365)])
def test_the_functions_log_group_is_encrypted_with_retention_from_config(
    stack: str, days: int
) -> None:
    plan = plan_of(stack)
    logs = plan.by_name("runner-logs")
    assert logs.inputs["kmsKeyId"] == kms_key_arn(plan)
    assert logs.inputs["retentionInDays"] == days
    function = only(plan, FUNCTION)
    assert function.inputs["loggingConfig"]["logGroup"] == logs.inputs["name"]


# --- an existing VPC must carry the endpoint's private DNS ---------------------------------

ROOT = Path(__file__).resolve().parent.parent
EXISTING_SUBNETS = ["subnet-0123abcd", "subnet-4567ef01"]


def test_an_existing_vpc_without_dns_hostnames_is_refused_at_preview_for_the_lambda_runner():
    # Private DNS on an interface endpoint needs both VPC attributes; without them the endpoint
    # fails at `pulumi up`, after the database was created
    # (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVpcEndpoint.html).
    from planner.engine import VPC_WITHOUT_DNS_HOSTNAMES

    overrides = {"existingVpcId": VPC_WITHOUT_DNS_HOSTNAMES, "existingSubnetIds": EXISTING_SUBNETS}
    with pytest.raises(PlanError) as caught:
        run_plan(ROOT, "staging", overrides=overrides)
    message = str(caught.value)
    assert f"appdb:existingVpcId = '{VPC_WITHOUT_DNS_HOSTNAMES}'" in message
    assert "enableDnsHostnames is off" in message and "modify-vpc-attribute" in message
    assert [r.type for r in caught.value.declared] == ["pulumi:providers:aws"]
    # `direct` creates no endpoint, so the same VPC is fine for it.
    run_plan(ROOT, "staging", overrides={**overrides, "runner": "direct"})


def test_an_existing_vpc_that_does_not_exist_is_refused_at_preview():
    overrides = {"existingVpcId": "vpc-0000000000000dead", "existingSubnetIds": EXISTING_SUBNETS}
    with pytest.raises(PlanError) as caught:
        run_plan(ROOT, "staging", overrides=overrides)
    assert "appdb:existingVpcId = 'vpc-0000000000000dead': not found in us-east-1" in str(
        caught.value
    )
