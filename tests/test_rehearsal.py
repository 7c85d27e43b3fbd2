"""The local rehearsal (`make rehearse`) runs end to end against its own stand-ins, and reads
well: progress step by step, a summary of each stack's plan first, the full plans on request."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from infra_plans import plan_of

import rehearsal.cli as rehearsal
from migrator.discovery import load_migrations
from planner.render import render_plan

ROOT = Path(__file__).resolve().parent.parent


def test_rehearsal_shows_progress_and_applies_the_schema_without_printing_a_password() -> None:
    # The plans step is tested below, on the plans the suite has already computed; `make
    # rehearse` as a whole runs in tests/test_documented_commands.py.
    completed = subprocess.run(
        [sys.executable, "-m", "rehearsal.cli", "--no-plan"],  # `make rehearse ARGS=--no-plan`
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    # Every step announced in order, as [n/N], and timed.
    total = len(rehearsal.STEPS) - 1
    steps = [(int(n), int(t)) for n, t in re.findall(r"^== \[(\d+)/(\d+)\] ", out, re.M)]
    assert steps == [(n, total) for n in range(1, total + 1)], out
    assert len(re.findall(r"^  \(\d+\.\d+s\)$", out, re.M)) == total
    assert f"{total} steps in " in out
    rows = {line.split()[1]: line.split()[2] for line in out.splitlines() if ".sql " in line}
    expected = load_migrations(ROOT / "schema").checksums()
    assert rows == dict.fromkeys(expected, "applied"), out
    assert "nothing to do: every migration is applied (changes=False)" in out
    assert '"password": "********"' in out
    assert "no password appeared in this output" in out
    # The lambda runner step: the providers invoked the function (on the Lambda stand-in).
    lambda_part = re.split(r"== \[\d+/\d+\] Lambda runner", out, maxsplit=1)[1]
    assert "schema migrations: applied V3__session_routines.sql" in lambda_part
    assert "schema `appdb_lambda` at version 3" in lambda_part
    tasks = [line.split()[1:3] for line in lambda_part.splitlines() if line[:3].strip().isdigit()]
    expected_tasks = ["migrate", "master.read", "master.rotate", "users.apply"]
    assert tasks == [[task, "done"] for task in expected_tasks]
    assert "passwords in any event, answer or function log: 0" in lambda_part
    # With the plans' summaries (below), the whole rehearsal stays a screenful or two.
    assert len(out.splitlines()) + PLAN_SUMMARY_LINE_LIMIT < 120


PLAN_SUMMARY_LINE_LIMIT = 40


@pytest.mark.parametrize("full", [False, True], ids=["summary only", "--full-plan"])
def test_full_plans_are_behind_a_flag(
    full: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(rehearsal, "run_plan", lambda _root, stack: plan_of(stack))
    options = rehearsal.build_parser().parse_args(["--full-plan"] if full else [])
    rehearsal.show_plans(rehearsal.Rehearsal(options=options))
    out = capsys.readouterr().out
    for stack in rehearsal.STACKS:
        assert f"Plan for appdb/{stack}: " in out
        full_plan = render_plan(plan_of(stack)).rstrip()
        assert (full_plan in out) is full
        if full:  # after both summaries
            assert out.index(full_plan) > out.index("Plan for appdb/production: ")
    assert ("--full-plan" in out) is not full  # says where the rest is
    if not full:
        assert len(out.splitlines()) <= PLAN_SUMMARY_LINE_LIMIT
        assert "      password: [secret]" not in out  # no property listing
        for stack in rehearsal.STACKS:
            plan = plan_of(stack)
            resources = sum(1 for r in plan.resources if r.custom)
            assert f"Plan for appdb/{stack}: {resources} resources in " in out
