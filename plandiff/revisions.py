"""Check out a base revision and compute offline plans.

Both sides are planned by the planner of the checkout running plan-diff; `planner.run_plan`
runs each program in its own process, with that checkout's modules, schema and stack files,
so nothing leaks between revisions. Plans of several stacks and revisions run in parallel.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from plandiff.model import PlanSnapshot

DEFAULT_LOCATION = "schema"


class PlanDiffError(Exception):
    """A failure to compute the diff (bad revision, a plan that fails): exit code 1."""


@dataclass(frozen=True)
class StackPlan:
    plan: PlanSnapshot
    migrations_location: str


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise PlanDiffError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    return result.stdout.strip()


def resolve(repo: Path, rev: str) -> str:
    if rev.startswith("-"):
        raise PlanDiffError(f"revision {rev!r} is not allowed (starts with '-')")
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except PlanDiffError:
        raise PlanDiffError(
            f"unknown revision {rev!r} in {repo}: not a commit here (a shallow clone or a "
            "branch not fetched? e.g. `git fetch origin main`)"
        ) from None


def extract_revision(repo: Path, commit: str, destination: Path) -> Path:
    """Write the project directory of `commit` into `destination` (git archive: read-only
    for the repository, so it never touches the index other people commit from)."""
    prefix = git(repo, "rev-parse", "--show-prefix")
    treeish = f"{commit}:{prefix.rstrip('/')}" if prefix else commit
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", treeish],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise PlanDiffError(f"git archive {treeish} failed: {archive.stderr.decode().strip()}")
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(destination, filter="data")
    return destination


def has_stack(project_dir: Path, stack: str) -> bool:
    return (project_dir / "Pulumi.yaml").is_file() and (
        project_dir / f"Pulumi.{stack}.yaml"
    ).is_file()


def stack_names(project_dir: Path) -> set[str]:
    """The stacks that have a stack file (`Pulumi.<stack>.yaml`) in `project_dir`."""
    if not (project_dir / "Pulumi.yaml").is_file():
        return set()
    return {path.name[len("Pulumi.") : -len(".yaml")] for path in project_dir.glob("Pulumi.*.yaml")}


def plan_stack(project_dir: Path, stack: str, label: str) -> StackPlan:
    """The offline plan of `stack` in `project_dir`; an empty plan where the stack does not
    exist yet (a base revision from before the stack was added)."""
    if not has_stack(project_dir, stack):
        return StackPlan(PlanSnapshot(stack, {}, {}), DEFAULT_LOCATION)
    import planner  # the checkout's own planner (imported here: the report logic needs none)

    try:
        config = planner.load_stack_config(project_dir, stack)
        plan = planner.run_plan(project_dir, stack)
    except (planner.StackConfigError, planner.PlanError) as error:
        raise PlanDiffError(f"planning stack {stack!r} at {label} failed: {error}") from error
    location = config.get("appdb:migrationsLocation") or DEFAULT_LOCATION
    return StackPlan(PlanSnapshot.from_plan(plan), str(location))


def plan_all(jobs: list[tuple[Path, str, str]]) -> dict[tuple[Path, str], StackPlan]:
    """Plans for (project_dir, stack, label) jobs, run in parallel (each in its own process)."""
    workers = max(1, min(len(jobs), os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            (directory, stack): pool.submit(plan_stack, directory, stack, label)
            for directory, stack, label in jobs
        }
        return {key: future.result() for key, future in futures.items()}


# --- plans computed elsewhere (the PR gate: docs/pipeline.md) ----------------------------------
# The pull request's own workflow runs its program and saves the plans; the gate, running the
# default branch's code, reads them as data. Nothing in a saved plan is executed; the migrations
# folder still comes from the stack file the gate reads itself.


def plan_file(directory: Path, side: str, stack: str) -> Path:
    return directory / side / f"{stack}.json"


def save_plan(plan: StackPlan, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plan.plan.to_json() + "\n", encoding="utf-8")


def load_plan(path: Path, project_dir: Path, stack: str) -> StackPlan:
    """A saved plan of `stack`, with the migrations folder from `project_dir`'s stack file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        snapshot = PlanSnapshot.from_dict(data)
    except FileNotFoundError:
        raise PlanDiffError(f"no saved plan {path}: the plans job did not produce it") from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise PlanDiffError(f"saved plan {path} is not a plan ({error})") from None
    if snapshot.stack != stack:
        raise PlanDiffError(f"saved plan {path} is of stack {snapshot.stack!r}, not {stack!r}")
    location = DEFAULT_LOCATION
    if has_stack(project_dir, stack):
        import planner

        try:
            config = planner.load_stack_config(project_dir, stack)
        except planner.StackConfigError as error:
            raise PlanDiffError(f"reading stack {stack!r} failed: {error}") from error
        location = str(config.get("appdb:migrationsLocation") or DEFAULT_LOCATION)
    return StackPlan(snapshot, location)
