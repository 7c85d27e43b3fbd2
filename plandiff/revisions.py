"""Check out a base revision and compute offline plans, each in its own interpreter.

Each plan runs the program of ONE checkout under the mock engine in a fresh subprocess, with
that checkout first on sys.path (its `infra/`, `migrator/`, schema and stack files) and the
planner of the checkout running plan-diff, so both sides are planned by the same planner and
nothing leaks between revisions through `sys.modules`. Plans run in parallel.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from plandiff.model import PlanSnapshot

TOOL_ROOT = Path(__file__).resolve().parent.parent  # the checkout whose planner is used
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
    return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")


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


_BOOTSTRAP = r"""
import dataclasses, importlib.util, json, sys
from pathlib import Path

tool_root, project_dir, stack, output = sys.argv[1:5]
# The revision's own modules first; the tool's checkout fills in anything it lacks.
sys.path[:0] = [project_dir, tool_root]
spec = importlib.util.spec_from_file_location(
    "planner",
    Path(tool_root, "planner", "__init__.py"),
    submodule_search_locations=[str(Path(tool_root, "planner"))],
)
planner = importlib.util.module_from_spec(spec)
sys.modules["planner"] = planner
spec.loader.exec_module(planner)

config = planner.load_stack_config(Path(project_dir), stack)
plan = planner.run_plan(Path(project_dir), stack)
resources = [dataclasses.asdict(r) for r in plan.resources]
Path(output).write_text(json.dumps({
    "plan": {"stack": plan.stack, "resources": resources, "outputs": plan.outputs},
    "migrations_location": config.get("appdb:migrationsLocation") or "",
}, sort_keys=True))
"""


def has_stack(project_dir: Path, stack: str) -> bool:
    return (project_dir / "Pulumi.yaml").is_file() and (
        project_dir / f"Pulumi.{stack}.yaml"
    ).is_file()


def plan_stack(project_dir: Path, stack: str, scratch: Path, label: str) -> StackPlan:
    """The offline plan of `stack` in `project_dir`; an empty plan where the stack does not
    exist yet (a base revision from before the stack was added)."""
    if not has_stack(project_dir, stack):
        return StackPlan(PlanSnapshot(stack, {}, {}), DEFAULT_LOCATION)
    output = scratch / f"plan-{label}-{stack}.json"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _BOOTSTRAP, str(TOOL_ROOT), str(project_dir), stack, str(output)],
        cwd=project_dir,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-30:])
        raise PlanDiffError(f"planning stack {stack!r} at {label} failed:\n{tail}")
    data = json.loads(output.read_text())
    return StackPlan(
        PlanSnapshot.from_dict(data["plan"]), data["migrations_location"] or DEFAULT_LOCATION
    )


def plan_all(jobs: list[tuple[Path, str, str]], scratch: Path) -> dict[tuple[Path, str], StackPlan]:
    """Plans for (project_dir, stack, label) jobs, run in parallel."""
    workers = max(1, min(len(jobs), os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            (directory, stack): pool.submit(plan_stack, directory, stack, scratch, label)
            for directory, stack, label in jobs
        }
        return {key: future.result() for key, future in futures.items()}
