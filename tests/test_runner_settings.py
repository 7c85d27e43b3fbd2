"""appdb:runner and its companions, validated with the rest of the stack's config."""

from __future__ import annotations

from test_settings import parse, problems


def test_both_stacks_use_the_lambda_runner_by_default():
    for stack in ("staging", "production"):
        settings = parse(stack)
        assert settings.runner == "lambda" and settings.uses_lambda_runner
        assert settings.runner_deadline_seconds == 3600


def test_direct_is_refused_on_a_stack_that_creates_its_own_vpc():
    (problem,) = problems("staging", runner="direct")
    assert problem.startswith("appdb:runner = 'direct': direct needs a machine inside the VPC")
    assert "appdb:runnerAllowDirect" in problem


def test_direct_is_accepted_with_an_existing_vpc_or_the_explicit_override():
    assert parse("staging", runner="direct", runnerAllowDirect=True).runner == "direct"
    existing = parse(
        "staging",
        runner="direct",
        existingVpcId="vpc-0123456789abcdef0",
        existingSubnetIds=["subnet-0123abcd", "subnet-4567efab"],
    )
    assert existing.runner == "direct" and not existing.uses_lambda_runner


def test_bad_runner_values_are_explained_together():
    found = problems("staging", runner="ssh", runnerDeadlineSeconds=5)
    assert any(p.startswith("appdb:runner = 'ssh': must be lambda") for p in found)
    assert any(p.startswith("appdb:runnerDeadlineSeconds = '5'") for p in found)


def test_the_lambda_runner_needs_the_ca_bundle_inside_the_project():
    (problem,) = problems("staging", tlsCaBundle="/etc/ssl/rds.pem")
    assert problem.startswith("appdb:tlsCaBundle = '/etc/ssl/rds.pem': with appdb:runner = lambda")
    assert parse("staging", runner="direct", runnerAllowDirect=True, tlsCaBundle="/etc/ssl/x.pem")
