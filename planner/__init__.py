"""The offline plan: the real Pulumi program, run under the SDK's mock engine with the real stack
config, and the resources it declares.

Each plan runs in its own Python process (planner/engine.py): the Pulumi runtime keeps global
state, and a separate process also keeps the modules of one checkout (project_dir) apart from
another's. Output is deterministic: same program and config, byte-identical JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from planner.config import (
    SECRET_PLACEHOLDER,
    StackConfigError,
    engine_value,
    load_stack_config,
    load_stack_config_with_secrets,
    project_name,
)

__all__ = [
    "SECRET_PLACEHOLDER",
    "Plan",
    "PlanError",
    "PlannedResource",
    "StackConfigError",
    "load_stack_config",
    "load_stack_config_with_secrets",
    "run_plan",
]

ENGINE = Path(__file__).resolve().parent / "engine.py"
STACK_COMPONENT = "stack"  # group of resources declared outside any component (e.g. the provider)


class PlanError(RuntimeError):
    """The program failed under the mock engine; `declared` lists what it had declared so far."""

    def __init__(self, message: str, error_type: str, declared: list[PlannedResource], where: str):
        super().__init__(message)
        self.error_type = error_type
        self.declared = declared
        self.where = where


@dataclass
class PlannedResource:
    urn: str
    type: str
    name: str
    parent: str | None
    component: str
    inputs: dict[str, Any]
    options: dict[str, Any]
    custom: bool = True


@dataclass
class Plan:
    stack: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    project: str = "appdb"
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        document = {
            "project": self.project,
            "stack": self.stack,
            "config": self.config,
            "resources": [asdict(r) for r in self.resources],
            "outputs": self.outputs,
        }
        return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    # Conveniences for tests and reports.
    def of_type(self, type_token: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_token]

    def by_name(self, name: str) -> PlannedResource:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]

    def by_urn(self, urn: str) -> PlannedResource:
        for resource in self.resources:
            if resource.urn == urn:
                return resource
        raise KeyError(urn)


def _qualified(key: str, project: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _resources(raw: list[dict[str, Any]]) -> list[PlannedResource]:
    by_urn = {r["urn"]: r for r in raw}

    def top_component(entry: dict[str, Any]) -> str:
        # Walk up to the ancestor whose parent is the stack (or missing).
        while entry.get("parent") in by_urn:
            entry = by_urn[entry["parent"]]
        return entry["name"] if not entry["custom"] else STACK_COMPONENT

    resources = [
        PlannedResource(
            urn=r["urn"],
            type=r["type"],
            name=r["name"],
            parent=r["parent"],
            component=top_component(r),
            inputs=r["inputs"],
            options=r["options"],
            custom=r["custom"],
        )
        for r in raw
    ]
    return sorted(resources, key=lambda r: r.urn)


def run_plan(
    project_dir: Path,
    stack: str,
    overrides: dict[str, object] | None = None,
    *,
    reveal_secrets: bool = False,
) -> Plan:
    """Plan `stack` of the program in `project_dir` (any checkout).

    `overrides` replace config values after the stack file ("appdb:key" or just "key" for the
    project namespace; YAML-typed values). Raises StackConfigError for unreadable config files and
    PlanError when the program fails (e.g. invalid settings). `reveal_secrets` (for tests:
    the mock engine has no real secrets) shows secret inputs as {"[secret]": value}.
    """
    project_dir = Path(project_dir).resolve()
    project = project_name(project_dir)
    values, secret_keys = load_stack_config_with_secrets(project_dir, stack)
    for key, value in (overrides or {}).items():
        values[_qualified(key, project)] = value
    config = {key: engine_value(value) for key, value in sorted(values.items())}
    request = {
        "project_dir": str(project_dir),
        "project": project,
        "stack": stack,
        "config": config,
        "secret_keys": sorted(secret_keys),
        "reveal_secrets": reveal_secrets,
    }
    with tempfile.TemporaryDirectory(prefix="appdb-plan-") as tmp:
        request_path = Path(tmp) / "request.json"
        result_path = Path(tmp) / "result.json"
        request_path.write_text(json.dumps(request), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
        env["PYTHONHASHSEED"] = "0"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        completed = subprocess.run(
            [sys.executable, str(ENGINE), str(request_path), str(result_path)],
            cwd=project_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if completed.returncode != 0 or not result_path.exists():
            raise PlanError(
                f"the plan engine crashed (exit {completed.returncode}):\n"
                + completed.stderr[-4000:],
                "EngineCrash",
                [],
                "",
            )
        result = json.loads(result_path.read_text(encoding="utf-8"))

    resources = _resources(result["resources"])
    if result["error"]:
        error = result["error"]
        raise PlanError(error["message"], error["type"], resources, error.get("traceback", ""))
    shown_config = {
        key: (SECRET_PLACEHOLDER if key in secret_keys else value) for key, value in values.items()
    }
    return Plan(
        stack=stack,
        resources=resources,
        outputs=result["outputs"],
        project=project,
        config=dict(sorted(shown_config.items())),
    )
