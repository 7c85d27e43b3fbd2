"""`scripts/plan-diff`: the offline plan diff as a command (see docs/pipeline.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plandiff import DEFAULT_STACKS, EXIT_ERROR, PlanDiffError, compare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="plan-diff",
        description="Offline plan diff of each stack between a base revision and the working "
        "tree, as Markdown. Exit code: 0 no flagged change, 2 flagged changes, 1 error.",
    )
    parser.add_argument("--base", required=True, help="base revision, e.g. origin/main")
    parser.add_argument("--head", help="head revision (default: the working tree as it is)")
    parser.add_argument(
        "--stack",
        action="append",
        dest="stacks",
        metavar="STACK",
        help=f"stack to diff; repeat for several (default: {' and '.join(DEFAULT_STACKS)})",
    )
    parser.add_argument("--output", type=Path, help="write the report here instead of stdout")
    saved = parser.add_mutually_exclusive_group()
    saved.add_argument(
        "--save-plans",
        type=Path,
        metavar="DIR",
        help="also write both sides' plans to DIR (base/<stack>.json, head/<stack>.json)",
    )
    saved.add_argument(
        "--plans",
        type=Path,
        metavar="DIR",
        help="read both sides' plans from DIR (written by --save-plans) instead of running "
        "the programs: the PR gate's verdict (docs/pipeline.md)",
    )
    parser.add_argument(
        "--project-dir", type=Path, default=Path("."), help="the Pulumi project (a git checkout)"
    )
    args = parser.parse_args(argv)
    try:
        comparison = compare(
            args.project_dir,
            args.base,
            args.head,
            args.stacks or DEFAULT_STACKS,
            plans=args.plans,
            save_plans=args.save_plans,
        )
    except PlanDiffError as error:
        print(f"plan-diff: {error}", file=sys.stderr)
        return EXIT_ERROR
    text = comparison.markdown()
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        flagged = len(comparison.flags)
        print(f"plan-diff: report written to {args.output} ({flagged} flagged)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return comparison.exit_code
