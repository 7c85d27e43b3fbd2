"""The pull-request gate cannot be switched off by the pull request.

A PR that edits plandiff/ so destructive statements are no longer flagged, and adds a DROP TABLE
migration: its own plan-diff passes it (the defect the gate exists for); the gate, the base
branch's plan-diff over the head's files and the plans the PR's job saved, still flags it.
The same steps as .github/workflows/pull-request.yml (job `plans`) and plan-diff-gate.yml.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_plan_diff import PROJECT_DIRS, project_repository
from test_plan_diff import run_git as git

DIRS = [*PROJECT_DIRS, "plandiff", "scripts"]  # the checkouts run their own plan-diff
SWITCH_OFF = (
    "def destructive_operations(sql: str) -> list[str]:\n",
    "def destructive_operations(sql: str) -> list[str]:\n    return []  # nothing to see here\n",
)


def checkout(repo: Path, commit: str, destination: Path) -> Path:
    """A checkout of `commit` (what actions/checkout gives a job)."""
    git(repo, "worktree", "add", "-q", "--detach", str(destination), commit)
    return destination


def plan_diff(checkout_dir: Path, repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = str(checkout_dir / "scripts" / "plan-diff")
    return subprocess.run(
        [sys.executable, script, "--project-dir", str(repo), "--stack", "staging", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def pull_request(tmp_path_factory):
    work = tmp_path_factory.mktemp("gate")
    repo = work / "repo"
    base = project_repository(repo, DIRS)
    git(repo, "checkout", "-q", "-b", "pr")
    rules = repo / "plandiff" / "rules.py"
    text = rules.read_text()
    assert SWITCH_OFF[0] in text, "plandiff/rules.py changed: update this test"
    rules.write_text(text.replace(*SWITCH_OFF))
    (repo / "schema" / "V99__drop_users.sql").write_text("DROP TABLE users;\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "harmless refactoring")
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    return work, repo, base, head


def test_the_pull_requests_own_plan_diff_is_switched_off(pull_request):
    work, repo, base, head = pull_request
    own = checkout(repo, head, work / "own")
    result = plan_diff(own, repo, "--base", base, "--head", head)
    assert result.returncode == 0, result.stderr  # exit 0 ...
    assert "V99__drop_users.sql" in result.stdout  # ... with the DROP TABLE pending


def test_the_gate_flags_it_with_the_base_branchs_code(pull_request, tmp_path):
    work, repo, base, head = pull_request
    # Job `plans` (the PR's workflow, no write permission): its own code plans both sides.
    untrusted = checkout(repo, head, work / "untrusted")
    plans = tmp_path / "plans"
    saved = plan_diff(untrusted, repo, "--base", base, "--head", head, "--save-plans", str(plans))
    assert saved.returncode == 0, saved.stderr
    assert (plans / "head" / "staging.json").is_file()
    # The gate (plan-diff-gate.yml, the default branch's workflow and code): reads the plans
    # as data and the head's files from git, and runs none of the pull request's code.
    trusted = checkout(repo, base, work / "trusted")
    report = tmp_path / "report.md"
    verdict = plan_diff(
        trusted,
        repo,
        "--base",
        base,
        "--head",
        head,
        "--plans",
        str(plans),
        "--output",
        str(report),
    )
    assert verdict.returncode == 2, verdict.stderr
    text = report.read_text()
    assert "destructive-migration" in text and "DROP TABLE" in text


def test_missing_or_forged_plans_fail_the_gate(pull_request, tmp_path):
    work, repo, base, head = pull_request
    trusted = work / "trusted" if (work / "trusted").exists() else checkout(repo, base, work / "t2")
    missing = plan_diff(trusted, repo, "--base", base, "--head", head, "--plans", str(tmp_path))
    assert missing.returncode == 1
    assert "no saved plan" in missing.stderr
    forged = tmp_path / "forged"
    for side in ("base", "head"):
        (forged / side).mkdir(parents=True)
        (forged / side / "staging.json").write_text('{"stack": "production", "resources": []}')
    wrong = plan_diff(trusted, repo, "--base", base, "--head", head, "--plans", str(forged))
    assert wrong.returncode == 1
    assert "is of stack 'production', not 'staging'" in wrong.stderr
