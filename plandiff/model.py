"""Plain, JSON-shaped views of an offline plan, independent of the planner's classes.

Plans are computed in subprocesses (one per revision and stack, see `revisions.py`) and come
back as JSON, so the diff works on these small records rather than on `planner.Plan` objects.
Anything with the `planner.Plan` attributes (stack, resources, outputs) converts as well.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

SECRET = "[secret]"  # what the planner puts in place of every secret value


@dataclass(frozen=True)
class Resource:
    urn: str
    type: str
    name: str
    component: str
    parent: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanSnapshot:
    stack: str
    resources: dict[str, Resource]  # by URN
    outputs: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # "ns:key" -> value, secrets masked

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanSnapshot:
        resources = {}
        for item in data.get("resources", []):
            resource = Resource(
                urn=item["urn"],
                type=item["type"],
                name=item["name"],
                component=item.get("component") or "",
                parent=item.get("parent"),
                inputs=dict(item.get("inputs") or {}),
                options=dict(item.get("options") or {}),
            )
            resources[resource.urn] = resource
        return cls(
            stack=data["stack"],
            resources=resources,
            outputs=dict(data.get("outputs") or {}),
            config=dict(data.get("config") or {}),
        )

    @classmethod
    def from_plan(cls, plan: Any) -> PlanSnapshot:
        """From a `planner.Plan` (or anything with the same attributes)."""
        return cls.from_dict(
            {
                "stack": plan.stack,
                "resources": [
                    dataclasses.asdict(r)
                    if dataclasses.is_dataclass(r) and not isinstance(r, type)
                    else dict(vars(r))
                    for r in plan.resources
                ],
                "outputs": plan.outputs,
                "config": getattr(plan, "config", {}),
            }
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "stack": self.stack,
                "resources": [dataclasses.asdict(r) for _, r in sorted(self.resources.items())],
                "outputs": self.outputs,
                "config": self.config,
            },
            sort_keys=True,
            indent=1,
        )
