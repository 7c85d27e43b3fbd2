"""`appdb-plan` (also `scripts/plan`): the offline plan of a stack.

The resources `pulumi up` would ask for, grouped by component. Runs the real program under
Pulumi's mock engine with the stack's config (Pulumi.yaml defaults, then Pulumi.<stack>.yaml).
Secrets are masked. Output is deterministic, so it can be diffed.

    scripts/plan --stack staging            # human-readable
    scripts/plan --stack production --json  # machine-readable (planner.Plan.to_json)
    scripts/plan --stack production --set readReplicaCount=3   # what-if, config not changed
    scripts/plan --stack staging --summary  # resources per component, and what is flagged

The project is the directory holding Pulumi.yaml: the current one or the nearest above it
(as `pulumi` looks), else the checkout this command belongs to; --project-dir overrides both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from planner import Plan, PlanError, StackConfigError, run_plan
from planner.render import render_plan, render_summary

CHECKOUT = Path(__file__).resolve().parent.parent


def find_project(start: Path) -> Path | None:
    """The directory holding Pulumi.yaml: `start` or the nearest parent (as `pulumi` looks),
    else this command's own checkout."""
    for directory in (start, *start.parents, CHECKOUT):
        if (directory / "Pulumi.yaml").is_file():
            return directory
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plan",
        description=(__doc__ or "").split("\n\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stack", required=True, help="stack name, e.g. staging or production")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print the plan as JSON")
    shape.add_argument(
        "--summary",
        action="store_true",
        help="print resources per component and what is flagged, not every property",
    )
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=None,
        help="directory holding Pulumi.yaml (default: the current one or the nearest above it, "
        "else this checkout)",
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a config value for this plan (YAML value; KEY like readReplicaCount or "
        "aws:region); repeatable",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    project_dir = args.project_dir or find_project(Path.cwd())
    if project_dir is None:
        parser.error(f"no Pulumi.yaml in {Path.cwd()} or above it: pass --project-dir")
    overrides: dict[str, object] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value) if value else ""
    try:
        plan = run_plan(project_dir, args.stack, overrides)
    except StackConfigError as exc:
        print(f"plan: {exc}", file=sys.stderr)
        return 2
    except PlanError as exc:
        print(f"plan: stack '{args.stack}' failed: {exc}", file=sys.stderr)
        if exc.where:
            print(f"  at {exc.where.splitlines()[-1]}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(plan.to_json())
    elif args.summary:
        sys.stdout.write(render_summary(plan, new_stack_flags(plan)))
    else:
        sys.stdout.write(render_plan(plan))
    return 0


def new_stack_flags(plan: Plan) -> list[str]:
    """What the pull-request check would flag if this plan were deployed from nothing."""
    from plandiff import PlanSnapshot, diff_plans

    empty = PlanSnapshot(plan.stack, {}, {})
    return [
        f"{f.subject}: {f.message}" for f in diff_plans(empty, PlanSnapshot.from_plan(plan)).flags
    ]


if __name__ == "__main__":
    sys.exit(main())
