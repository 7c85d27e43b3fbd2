"""The offline planner: config loaded as the CLI would, the program of any checkout run under the
mock engine in its own process, deterministic output, secrets masked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from infra_plans import ROOT, plan_of

from planner import (
    SECRET_PLACEHOLDER,
    PlanError,
    StackConfigError,
    load_stack_config,
    load_stack_config_with_secrets,
    run_plan,
)
from planner.engine import ZONE_LETTERS, mock_call
from planner.render import render_plan

DEMO_PROJECT = """\
name: demo
runtime: python
config:
  size:
    type: integer
    default: 1
    description: how many buckets
  label:
    type: string
    default: plain
    description: a label
  aws:region:
    value: eu-west-1
"""

# A program with its own `infra` package: run_plan must import the checkout's modules, not ours.
DEMO_INFRA = """\
import pulumi
import pulumi_aws as aws

def build(provider):
    config = pulumi.Config()
    token = config.require_secret("token")
    buckets = [
        aws.s3.Bucket(
            f"bucket-{i}", tags={"token": token}, opts=pulumi.ResourceOptions(provider=provider)
        )
        for i in range(config.require_int("size"))
    ]
    pulumi.export("label", config.require("label"))
    pulumi.export("token", token)
    pulumi.export("bucketCount", len(buckets))
"""
DEMO_MAIN = """\
import pulumi_aws as aws
from infra import build
build(aws.Provider("aws", region="eu-west-1"))
"""


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text(DEMO_PROJECT)
    (tmp_path / "Pulumi.dev.yaml").write_text(
        "config:\n  demo:size: 2\n  label: from-stack\n  demo:token:\n    secure: v1:abc==\n"
    )
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "__init__.py").write_text(DEMO_INFRA)
    (tmp_path / "__main__.py").write_text(DEMO_MAIN)
    return tmp_path


def test_project_defaults_then_stack_values_with_namespaces(demo: Path):
    values, secrets = load_stack_config_with_secrets(demo, "dev")
    assert values == {
        "aws:region": "eu-west-1",  # namespaced keys of Pulumi.yaml are kept as they are
        "demo:label": "from-stack",  # a bare key in the stack file is the project's
        "demo:size": 2,
        "demo:token": SECRET_PLACEHOLDER,
    }
    assert secrets == {"demo:token"}


def test_real_stacks_get_every_default(demo: Path):
    staging = load_stack_config(ROOT, "staging")
    assert staging["appdb:readReplicaCount"] == 0  # from Pulumi.yaml
    assert staging["appdb:multiAz"] is False  # from Pulumi.staging.yaml over the default true
    assert staging["pulumi:disable-default-providers"] == ["aws"]
    assert load_stack_config(ROOT, "production")["appdb:multiAz"] is True


def test_bad_yaml_and_missing_files_name_the_file(demo: Path):
    (demo / "Pulumi.broken.yaml").write_text("config:\n  demo:size: [1,\n")
    with pytest.raises(StackConfigError, match=r"Pulumi\.broken\.yaml: not valid YAML"):
        load_stack_config(demo, "broken")
    with pytest.raises(StackConfigError, match=r"Pulumi\.nope\.yaml: file not found"):
        load_stack_config(demo, "nope")
    (demo / "Pulumi.list.yaml").write_text("- 1\n")
    with pytest.raises(StackConfigError, match=r"Pulumi\.list\.yaml: expected a mapping"):
        load_stack_config(demo, "list")


def test_any_checkout_runs_with_its_own_modules_and_secrets_stay_masked(demo: Path):
    plan = run_plan(demo, "dev")
    assert plan.project == "demo"
    buckets = plan.of_type("aws:s3/bucket:Bucket")
    assert [b.name for b in buckets] == ["bucket-0", "bucket-1"]
    assert all(b.inputs["tags"] == {"token": SECRET_PLACEHOLDER} for b in buckets)
    assert plan.outputs == {"bucketCount": 2, "label": "from-stack", "token": SECRET_PLACEHOLDER}
    assert plan.config["demo:token"] == SECRET_PLACEHOLDER
    (provider,) = plan.of_type("pulumi:providers:aws")
    assert all(b.options["provider"] == provider.urn for b in buckets)
    assert {b.component for b in buckets} == {"stack"}  # declared outside any component


def test_overrides_apply_on_top_of_the_stack_file(demo: Path):
    plan = run_plan(demo, "dev", overrides={"size": 3, "demo:label": "override"})
    assert len(plan.of_type("aws:s3/bucket:Bucket")) == 3
    assert plan.outputs["label"] == "override"


def test_disabled_default_provider_is_enforced_like_the_engine(demo: Path):
    (demo / "__main__.py").write_text("import pulumi_aws as aws\naws.s3.Bucket('loose')\n")
    (demo / "Pulumi.dev.yaml").write_text(
        "config:\n  pulumi:disable-default-providers: ['aws']\n  demo:token: x\n"
    )
    with pytest.raises(PlanError) as caught:
        run_plan(demo, "dev")
    assert caught.value.error_type == "DefaultProviderError"
    assert "aws:s3/bucket:Bucket 'loose' uses the default provider" in str(caught.value)


def test_program_errors_are_reported_with_the_programs_own_frames(demo: Path):
    (demo / "__main__.py").write_text("import pulumi\n\nraise ValueError('bad thing')\n")
    with pytest.raises(PlanError) as caught:
        run_plan(demo, "dev")
    assert (caught.value.error_type, str(caught.value)) == ("ValueError", "bad thing")
    assert caught.value.where.endswith("__main__.py:3 in <module>")


def test_unmocked_invokes_fail_loudly():
    with pytest.raises(NotImplementedError, match="no mock for invoke aws:index/getAmi:getAmi"):
        mock_call("aws:index/getAmi:getAmi", {}, "us-east-1")
    names = mock_call("aws:index/getAvailabilityZones:getAvailabilityZones", {}, "us-west-1")[
        "names"
    ]
    assert (
        names
        == ["us-west-1a", "us-west-1c"]
        == [f"us-west-1{c}" for c in ZONE_LETTERS["us-west-1"]]
    )


def test_region_with_too_few_zones_fails_with_the_key():
    with pytest.raises(PlanError) as caught:
        run_plan(ROOT, "production", overrides={"aws:region": "us-west-1"})
    assert caught.value.error_type == "SettingsError"
    assert str(caught.value).endswith(
        "appdb:availabilityZoneCount = '3': the region offers only 2 available zones "
        "(us-west-1a, us-west-1c)"
    )
    # Only the (tagged) provider exists by then: no AWS resource was declared.
    assert [r.type for r in caught.value.declared] == ["pulumi:providers:aws"]


def test_human_output_groups_by_component_and_masks_secrets():
    # What `scripts/plan --stack staging` prints (the CLI path itself is exercised by the
    # --json test below).
    human = render_plan(plan_of("staging"))
    for heading in (
        "== credentials (appdb:credentials:Credentials)",
        "== database (appdb:database:Database)",
        "== encryption (appdb:encryption:Encryption)",
        "== network (appdb:network:Network)",
    ):
        assert heading in human
    database = human[human.index("== database") :]
    assert "  + aws:rds:Instance  database-primary\n" in database
    assert "      password: [secret]\n" in database
    assert "      (ignore_changes: password)\n" in database
    assert "  writerEndpoint: [secret]\n" in human
    assert "Mock" not in human  # the mock password never appears
    assert human.startswith("Plan for appdb/staging: ")
    assert human == render_plan(plan_of("staging"))


def test_plan_cli_reports_bad_config_without_a_traceback():
    completed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plan"), "--stack", "nosuchstack"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    assert "Pulumi.nosuchstack.yaml: file not found" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_existing_vpc_mode_creates_no_network():
    plan = run_plan(
        ROOT,
        "staging",
        overrides={
            "existingVpcId": "vpc-0123456789abcdef0",
            "existingSubnetIds": ["subnet-0123abcd", "subnet-4567ef01"],
        },
    )
    for absent in ("Vpc", "Subnet", "FlowLog", "DefaultSecurityGroup", "RouteTable"):
        assert not [r for r in plan.resources if r.type.endswith(f":{absent}")], absent
    (subnet_group,) = plan.of_type("aws:rds/subnetGroup:SubnetGroup")
    assert subnet_group.inputs["subnetIds"] == ["subnet-0123abcd", "subnet-4567ef01"]
    assert {g.inputs["vpcId"] for g in plan.of_type("aws:ec2/securityGroup:SecurityGroup")} == {
        "vpc-0123456789abcdef0"
    }
    assert plan.outputs["vpcId"] == "vpc-0123456789abcdef0"


def test_json_cli_is_byte_identical_to_an_earlier_run():
    """A separate process, run again: the same bytes (what PR plan diffs rely on)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plan"), "--stack", "production", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == plan_of("production").to_json()
    document = json.loads(out)
    assert [r["urn"] for r in document["resources"]] == sorted(
        r["urn"] for r in document["resources"]
    )


def test_plan_cli_what_if_with_invalid_values_lists_every_problem():
    completed = subprocess.run(
        [
            sys.executable, str(ROOT / "scripts" / "plan"), "--stack", "staging",
            "--set", "readReplicaCount=9", "--set", "masterPasswordLength=8",
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert "invalid configuration for stack 'staging' (2 problems)" in completed.stderr
    assert "appdb:readReplicaCount = '9': must be an integer from 0 to 5" in completed.stderr
    assert "appdb:masterPasswordLength = '8': must be an integer from 16 to 41" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_structured_keys_are_declared_with_types_and_checked_like_the_cli(demo: Path):
    (demo / "Pulumi.yaml").write_text(
        DEMO_PROJECT
        + "  tags:\n    type: object\n    default: {}\n    description: extra tags\n"
        + "  zones:\n    type: array\n    items:\n      type: string\n    default: []\n"
        + "    description: zones\n"
    )
    values, _ = load_stack_config_with_secrets(demo, "dev")
    assert (values["demo:tags"], values["demo:zones"]) == ({}, [])
    (demo / "Pulumi.typed.yaml").write_text(
        "config:\n  demo:tags: {team: db}\n  demo:zones: [a, b]\n"
        "  demo:size: '4'\n  demo:token: t\n"
    )
    values, _ = load_stack_config_with_secrets(demo, "typed")
    assert (values["demo:tags"], values["demo:zones"]) == ({"team": "db"}, ["a", "b"])
    for bad, words in (
        ("demo:tags: [1]", "demo:tags = [1] is not of the type Pulumi.yaml declares (object)"),
        ("demo:zones: {a: 1}", "(array of string)"),
        ("demo:zones: [[1]]", "(array of string)"),
        ("demo:size: two", 'demo:size = "two" is not of the type Pulumi.yaml declares (integer)'),
    ):
        (demo / "Pulumi.bad.yaml").write_text(f"config:\n  {bad}\n")
        with pytest.raises(StackConfigError) as caught:
            load_stack_config(demo, "bad")
        assert "Pulumi.bad.yaml" in str(caught.value) and words in str(caught.value)


def test_summary_counts_each_components_resources_and_lists_flags() -> None:
    import copy
    import re
    from collections import Counter

    from planner.cli import new_stack_flags
    from planner.render import render_summary

    plan = plan_of("production")
    text = render_summary(plan, new_stack_flags(plan))
    counts = Counter(r.component for r in plan.resources if r.custom)
    for component, count in counts.items():
        assert re.search(rf"^  {component} .* {count}(  +\d+)?$", text, re.MULTILINE), component
    assert f": {sum(counts.values())} resources in {len(counts)} groups" in text.splitlines()[0]
    key_row = next(line for line in text.splitlines() if line.startswith("  encryption "))
    assert key_row.split()[-2:] == ["2", "1"]  # the KMS key is protected in production
    assert "flagged: nothing" in text

    # A plan the pull-request rules object to: its summary says so, naming the resource.
    public = copy.deepcopy(plan)
    public.by_name("database-primary").inputs["publiclyAccessible"] = True
    flagged = render_summary(public, new_stack_flags(public))
    assert "flagged (1)" in flagged
    assert "FLAG database-primary: new database instance" in flagged
    assert "publicly accessible" in flagged


def test_plan_cli_summary_is_the_rendered_summary() -> None:
    from planner.cli import new_stack_flags
    from planner.render import render_summary

    completed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plan"), "--stack", "staging", "--summary"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    plan = plan_of("staging")
    assert completed.stdout == render_summary(plan, new_stack_flags(plan))
