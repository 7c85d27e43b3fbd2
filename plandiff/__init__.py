"""Offline plan diff: what a change does to each stack, for pull-request reviewers.

Plans each stack (under the Pulumi mock engine, via `planner`) at a base revision and at the
working tree (or a head revision), and renders a deterministic Markdown report per stack:
resources added/removed/changed with property-level before/after (secrets stay `[secret]`),
the migrations that would become pending with each statement's first line, and flags for
changes reviewers must not miss. See docs/pipeline.md.

    comparison = compare(Path("."), base="origin/main")
    print(comparison.markdown())
    sys.exit(comparison.exit_code)   # 0 nothing flagged, 2 flagged
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from plandiff.diff import Flag, PropertyChange, ResourceChange, StackDiff, diff_plans
from plandiff.migrations import MigrationDiff, PendingMigration, diff_migrations
from plandiff.model import PlanSnapshot, Resource
from plandiff.render import StackReport, code, render_report
from plandiff.revisions import (
    PlanDiffError,
    StackPlan,
    extract_revision,
    load_plan,
    plan_all,
    plan_file,
    resolve,
    save_plan,
    stack_names,
)
from plandiff.rules import REPLACE_FORCING, destructive_operations

__all__ = [
    "REPLACE_FORCING",
    "Comparison",
    "Flag",
    "MigrationDiff",
    "PendingMigration",
    "PlanDiffError",
    "PlanSnapshot",
    "PropertyChange",
    "Resource",
    "ResourceChange",
    "StackDiff",
    "StackPlan",
    "StackReport",
    "build_reports",
    "compare",
    "destructive_operations",
    "diff_migrations",
    "diff_plans",
]

DEFAULT_STACKS = ("staging", "production")
EXIT_OK, EXIT_ERROR, EXIT_FLAGGED = 0, 1, 2


@dataclass
class Comparison:
    reports: list[StackReport]
    base_label: str
    head_label: str

    @property
    def flags(self) -> list[Flag]:
        return [flag for report in self.reports for flag in report.flags]

    @property
    def exit_code(self) -> int:
        return EXIT_FLAGGED if self.flags else EXIT_OK

    def markdown(self) -> str:
        return render_report(self.reports, self.base_label, self.head_label)

    def report(self, stack: str) -> StackReport:
        return next(r for r in self.reports if r.stack == stack)


def build_reports(
    base_dir: Path,
    head_dir: Path,
    base_plans: dict[str, StackPlan],
    head_plans: dict[str, StackPlan],
    stacks: Sequence[str],
) -> list[StackReport]:
    reports = []
    for stack in stacks:
        base, head = base_plans[stack], head_plans[stack]
        reports.append(
            StackReport(
                stack=stack,
                resources=diff_plans(base.plan, head.plan),
                migrations=diff_migrations(
                    base_dir,
                    head_dir,
                    location=head.migrations_location,
                    base_location=base.migrations_location,
                ),
            )
        )
    return reports


def _refuse_unknown_stacks(stacks: Sequence[str], known: set[str]) -> None:
    """A stack with a stack file on neither side is a typo, not an empty stack."""
    unknown = [stack for stack in stacks if stack not in known]
    if unknown:
        named = ", ".join(f"'{stack}'" for stack in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise PlanDiffError(
            f"unknown stack{plural} {named}: no Pulumi.<stack>.yaml at the base or the head; "
            f"known stacks: {', '.join(sorted(known)) or '(none)'}"
        )


def compare(
    project_dir: Path,
    base: str,
    head: str | None = None,
    stacks: Sequence[str] = DEFAULT_STACKS,
    *,
    plans: Path | None = None,
    save_plans: Path | None = None,
) -> Comparison:
    """Diff the stacks of `project_dir` (a git checkout) between `base` and `head`
    (a revision, or None for the working tree as it is, uncommitted changes included).

    `save_plans` writes both sides' plans under that directory (`base/<stack>.json`,
    `head/<stack>.json`); `plans` reads them from there instead of running the programs, so
    the verdict can be computed by other code than the code that planned (the PR gate)."""
    project_dir = project_dir.resolve()
    stacks = list(dict.fromkeys(stacks))
    base_commit = resolve(project_dir, base)
    base_label = f"{code(base)} ({code(base_commit[:12])})"
    with tempfile.TemporaryDirectory(prefix="plan-diff-") as scratch_name:
        scratch = Path(scratch_name)
        base_dir = extract_revision(project_dir, base_commit, scratch / "base")
        if head is None:
            head_dir, head_label = project_dir, "working tree"
        else:
            head_commit = resolve(project_dir, head)
            head_dir = extract_revision(project_dir, head_commit, scratch / "head")
            head_label = f"{code(head)} ({code(head_commit[:12])})"
        _refuse_unknown_stacks(stacks, stack_names(base_dir) | stack_names(head_dir))
        sides = {"base": base_dir, "head": head_dir}
        if plans is not None:
            planned = {
                (side, s): load_plan(plan_file(plans, side, s), directory, s)
                for side, directory in sides.items()
                for s in stacks
            }
        else:
            jobs = [(directory, s, side) for side, directory in sides.items() for s in stacks]
            computed = plan_all(jobs)
            planned = {
                (side, s): computed[(directory, s)]
                for side, directory in sides.items()
                for s in stacks
            }
            if save_plans is not None:
                for (side, s), stack_plan in planned.items():
                    save_plan(stack_plan, plan_file(save_plans, side, s))
        reports = build_reports(
            base_dir,
            head_dir,
            {s: planned[("base", s)] for s in stacks},
            {s: planned[("head", s)] for s in stacks},
            stacks,
        )
    return Comparison(reports, base_label, head_label)
