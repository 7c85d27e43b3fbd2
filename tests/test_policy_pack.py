"""The CrossGuard policy pack (policy/), without the Pulumi CLI: every policy's validation runs on
every resource of both real stacks' plans (nothing reported) and on a resource or stack that
breaks it (it reports); the pack itself starts the way the CLI starts it and answers the
analyzer protocol."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra_plans import INSTANCE, ROOT, plan_of, primary

from planner import Plan, PlannedResource

POLICY_DIR = ROOT / "policy"
sys.path.insert(0, str(POLICY_DIR))

import appdb_fsbp  # noqa: E402  (the pack's module, from its own directory)
from pulumi_policy import (  # noqa: E402
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy  # noqa: E402

POLICIES = {p.name: p for p in appdb_fsbp.policies()}


def options(resource: PlannedResource) -> PolicyResourceOptions:
    o = resource.options
    return PolicyResourceOptions(
        protect=o["protect"],
        ignore_changes=o["ignore_changes"],
        delete_before_replace=o["delete_before_replace"],
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=o["additional_secret_outputs"],
        parent=resource.parent,
    )


def provider_of(plan: Plan, resource: PlannedResource) -> PolicyProviderResource | None:
    urn = resource.options.get("provider")
    if not urn:
        return None
    provider = plan.by_urn(urn)
    return PolicyProviderResource(
        provider.type, unknown_checking_proxy(provider.inputs), provider.urn, provider.name
    )


def resource_args(plan: Plan, resource: PlannedResource) -> ResourceValidationArgs:
    return ResourceValidationArgs(
        resource.type,
        unknown_checking_proxy(copy.deepcopy(resource.inputs)),
        resource.urn,
        resource.name,
        options(resource),
        provider_of(plan, resource),
    )


def stack_args(plan: Plan) -> StackValidationArgs:
    built: dict[str, PolicyResource] = {}
    for r in plan.resources:
        built[r.urn] = PolicyResource(
            r.type,
            unknown_checking_proxy(copy.deepcopy(r.inputs)),
            r.urn,
            r.name,
            options(r),
            provider_of(plan, r),
            None,
            [],
            {},
        )
    for r in plan.resources:
        built[r.urn].parent = built.get(r.parent or "")
        built[r.urn].dependencies = [built[u] for u in r.options["depends_on"] if u in built]
    return StackValidationArgs(list(built.values()))


def violations(policy: Any, args: Any) -> list[str]:
    found: list[str] = []
    try:
        policy.validate(args, lambda message, urn=None: found.append(message))
    except Exception as error:  # not_applicable() raises; that is no violation
        if type(error).__name__ != "_NotApplicableError":
            raise
    return found


def test_the_pack_holds_every_control_the_fsbp_tests_assert():
    assert set(POLICIES) == {
        "rds-encrypted-with-cmk", "rds-no-public-access", "rds-deletion-protection-in-production",
        "rds-backups-in-production", "rds-iam-authentication", "rds-log-exports",
        "rds-multi-az-in-production", "rds-non-default-port-in-production",
        "rds-custom-admin-username", "kms-key-rotation", "kms-key-protected-in-production",
        "sns-topic-encrypted", "standard-tags", "vpc-flow-logs",
        "default-security-group-closed", "rds-event-subscriptions",
    }  # fmt: skip
    for policy in POLICIES.values():
        assert re.search(r"\b(RDS|KMS|EC2|SNS|Tagging)\.\d+\b", policy.description), policy.name
        assert policy.enforcement_level in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY)
    assert POLICIES["standard-tags"].enforcement_level == EnforcementLevel.ADVISORY
    assert POLICIES["rds-encrypted-with-cmk"].enforcement_level == EnforcementLevel.MANDATORY


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_both_real_stacks_pass_every_policy(stack):
    plan = plan_of(stack)
    reported = []
    for policy in POLICIES.values():
        if isinstance(policy, ResourceValidationPolicy):
            for resource in plan.resources:
                reported += [
                    (policy.name, resource.name, v)
                    for v in violations(policy, resource_args(plan, resource))
                ]
        else:
            assert isinstance(policy, StackValidationPolicy)
            reported += [(policy.name, "stack", v) for v in violations(policy, stack_args(plan))]
    assert reported == []


def with_inputs(plan: Plan, resource: PlannedResource, **changes: Any) -> ResourceValidationArgs:
    args = resource_args(plan, resource)
    target = args.props["__target"]
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return args


def instance_args(stack: str, **changes: Any) -> ResourceValidationArgs:
    plan = plan_of(stack)
    return with_inputs(plan, primary(plan), **changes)


def key_args(stack: str, protect: bool = True, **changes: Any) -> ResourceValidationArgs:
    plan = plan_of(stack)
    (key,) = plan.of_type("aws:kms/key:Key")
    args = with_inputs(plan, key, **changes)
    args.opts.protect = protect
    return args


def untagged(args: ResourceValidationArgs) -> ResourceValidationArgs:
    args.provider = None
    return args


RESOURCE_VIOLATIONS: dict[str, tuple[Callable[[], ResourceValidationArgs], str]] = {
    "rds-encrypted-with-cmk": (
        lambda: instance_args("production", storageEncrypted=False, kmsKeyId=None),
        "storageEncrypted must be true",
    ),
    "rds-no-public-access": (
        lambda: instance_args("staging", publiclyAccessible=True),
        "publiclyAccessible must be false",
    ),
    "rds-deletion-protection-in-production": (
        lambda: instance_args("production", deletionProtection=False),
        "deletionProtection must be true in production",
    ),
    "rds-backups-in-production": (
        lambda: instance_args("production", backupRetentionPeriod=1),
        "backupRetentionPeriod is 1",
    ),
    "rds-iam-authentication": (
        lambda: instance_args("staging", iamDatabaseAuthenticationEnabled=False),
        "iamDatabaseAuthenticationEnabled must be true",
    ),
    "rds-log-exports": (
        lambda: instance_args("staging", enabledCloudwatchLogsExports=["error"]),
        "lacks audit, general, slowquery",
    ),
    "rds-multi-az-in-production": (
        lambda: instance_args("production", multiAz=False),
        "multiAz must be true",
    ),
    "rds-non-default-port-in-production": (
        lambda: instance_args("production", port=None),
        "port is MySQL's default 3306",
    ),
    "rds-custom-admin-username": (
        lambda: instance_args("staging", username="Admin"),
        "'Admin' is a well-known administrator name",
    ),
    "kms-key-rotation": (
        lambda: key_args("staging", enableKeyRotation=False),
        "enableKeyRotation must be true",
    ),
    "kms-key-protected-in-production": (
        lambda: key_args("production", protect=False),
        "must be `protect`ed",
    ),
    "sns-topic-encrypted": (
        lambda: (
            lambda p: with_inputs(p, p.of_type("aws:sns/topic:Topic")[0], kmsMasterKeyId=None)
        )(plan_of("staging")),
        "kmsMasterKeyId must name",
    ),
    "standard-tags": (
        lambda: untagged(instance_args("staging")),
        "missing tags Project, Environment, ManagedBy",
    ),
}


@pytest.mark.parametrize("name", RESOURCE_VIOLATIONS)
def test_each_resource_policy_reports_a_resource_that_breaks_it(name):
    make, expected = RESOURCE_VIOLATIONS[name]
    found = violations(POLICIES[name], make())
    assert found and any(expected in v for v in found), found
    # ... and only that policy: the other policies stay quiet about the unrelated change.
    if name not in ("rds-encrypted-with-cmk", "standard-tags"):
        others = [
            p for n, p in POLICIES.items() if n != name and isinstance(p, ResourceValidationPolicy)
        ]
        assert [v for p in others for v in violations(p, make())] == []


def test_production_only_controls_do_not_apply_to_staging():
    for name, change in (
        ("rds-deletion-protection-in-production", {"deletionProtection": False}),
        ("rds-multi-az-in-production", {"multiAz": False}),
        ("rds-non-default-port-in-production", {"port": 3306}),
        ("rds-backups-in-production", {"backupRetentionPeriod": 0}),
    ):
        assert violations(POLICIES[name], instance_args("staging", **change)) == []
    assert violations(POLICIES["kms-key-protected-in-production"], key_args("staging", False)) == []


def stack_without(plan: Plan, drop: Callable[[PlannedResource], bool], **edits: Any):
    args = stack_args(plan)
    args.resources = [r for r in args.resources if not drop(plan.by_urn(r.urn))]
    for resource in args.resources:
        for key, value in edits.get(resource.resource_type, {}).items():
            resource.props["__target"][key] = value
    return args


def test_each_stack_policy_reports_a_stack_that_breaks_it():
    plan = plan_of("production")
    no_flow_log = stack_without(plan, lambda r: r.type == "aws:ec2/flowLog:FlowLog")
    assert violations(POLICIES["vpc-flow-logs"], no_flow_log) == [
        "the VPC has no flow log of ALL traffic"
    ]
    open_default = stack_without(
        plan,
        lambda r: False,
        **{"aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": {"ingress": [{"protocol": "-1"}]}},
    )
    assert violations(POLICIES["default-security-group-closed"], open_default) == [
        "the default security group must have no ingress and no egress rules"
    ]
    no_default = stack_without(plan, lambda r: r.type.endswith("DefaultSecurityGroup"))
    assert "not adopted" in violations(POLICIES["default-security-group-closed"], no_default)[0]
    no_events = stack_without(plan, lambda r: r.type.endswith("EventSubscription"))
    assert violations(POLICIES["rds-event-subscriptions"], no_events) == [
        "no enabled db-instance event subscription for: configuration change, failure, maintenance",
        "no enabled db-parameter-group event subscription for: configuration change",
        "no enabled db-security-group event subscription for: configuration change, failure",
    ]
    # Existing-VPC mode: no VPC of ours, so the VPC controls do not apply.
    no_vpc = stack_without(plan, lambda r: r.type == "aws:ec2/vpc:Vpc")
    assert violations(POLICIES["vpc-flow-logs"], no_vpc) == []


def test_an_unknown_value_is_left_to_the_sdk_not_guessed():
    # During a first preview the key ARN is unknown: the SDK turns the UnknownValueError into
    # an advisory "can't run policy during preview" diagnostic.
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

    args = instance_args("production", kmsKeyId=UNKNOWN_STRING_VALUE)
    with pytest.raises(UnknownValueError):
        violations(POLICIES["rds-encrypted-with-cmk"], args)


# --- the pack as the CLI runs it ----------------------------------------------------------------


def test_the_pack_serves_the_analyzer_protocol_like_the_cli_starts_it():
    """`pulumi preview --policy-pack policy` runs `python -m pulumi.policy ENGINE policy` in the
    pack's virtualenv and reads the port it prints; here with the suite's interpreter."""
    import grpc
    from google.protobuf import empty_pb2, struct_pb2
    from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, plugin_pb2

    process = subprocess.Popen(
        [sys.executable, "-m", "pulumi.policy", "127.0.0.1:1", str(POLICY_DIR)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=POLICY_DIR,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().decode().strip())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = analyzer_pb2_grpc.AnalyzerStub(channel)
        info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
        assert info.name == "appdb-fsbp"
        assert {p.name for p in info.policies} == set(POLICIES)

        plan = plan_of("production")
        instance = primary(plan)
        properties = struct_pb2.Struct()
        properties.update({**instance.inputs, "publiclyAccessible": True, "multiAz": False})
        provider = plan.by_urn(instance.options["provider"])
        provider_properties = struct_pb2.Struct()
        provider_properties.update(provider.inputs)
        response = stub.Analyze(
            analyzer_pb2.AnalyzeRequest(
                type=INSTANCE,
                properties=properties,
                urn=instance.urn,
                name=instance.name,
                options=analyzer_pb2.AnalyzerResourceOptions(protect=False),
                provider=analyzer_pb2.AnalyzerProviderResource(
                    type=provider.type,
                    properties=provider_properties,
                    urn=provider.urn,
                    name=provider.name,
                ),
            ),
            timeout=30,
        )
        reported = {d.policyName: d for d in response.diagnostics}
        assert set(reported) == {"rds-no-public-access", "rds-multi-az-in-production"}
        mandatory = analyzer_pb2.EnforcementLevel.Value("MANDATORY")
        assert {d.enforcementLevel for d in reported.values()} == {mandatory}
        assert plugin_pb2  # the SDK's generated protocol, the one the CLI speaks
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_pack_installs_the_versions_the_suite_tests():
    """The pack's own virtualenv gets the same pulumi and pulumi-policy as the tests use."""
    pins = dict(
        line.split("==")
        for line in (POLICY_DIR / "requirements.txt").read_text().splitlines()
        if "==" in line
    )
    program = dict(
        line.split("==")
        for path in ("requirements.txt", "requirements-dev.txt")
        for line in (ROOT / path).read_text().splitlines()
        if "==" in line
    )
    assert pins["pulumi-policy"] == program["pulumi-policy"]
    assert pins["pulumi"] == program["pulumi"]
    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": "venv"},
    }
    assert json.loads(json.dumps(project))["version"]
    assert Path(POLICY_DIR / "__main__.py").is_file()
