"""Plans of the real stacks, computed once per test session (each is a subprocess of ~2 s).

Helpers for the infra tests; not a conftest so other areas' tests are unaffected.
"""

from __future__ import annotations

import functools
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from planner import Plan, PlannedResource, run_plan

ROOT = Path(__file__).resolve().parent.parent
STACKS: tuple[str, ...] = ("staging", "production")

INSTANCE = "aws:rds/instance:Instance"


@functools.cache
def stack_plans() -> dict[str, Plan]:
    """Both stacks' plans, run side by side."""
    with ThreadPoolExecutor(max_workers=len(STACKS)) as pool:
        plans = dict(zip(STACKS, pool.map(lambda s: run_plan(ROOT, s), STACKS), strict=True))
    return plans


def plan_of(stack: str) -> Plan:
    return stack_plans()[stack]


def primary(plan: Plan) -> PlannedResource:
    (instance,) = [r for r in plan.of_type(INSTANCE) if "replicateSourceDb" not in r.inputs]
    return instance


def replicas(plan: Plan) -> list[PlannedResource]:
    return [r for r in plan.of_type(INSTANCE) if "replicateSourceDb" in r.inputs]


def kms_key_arn(plan: Plan) -> str:
    arn = plan.outputs["kmsKeyArn"]
    assert isinstance(arn, str) and arn.startswith("arn:aws:kms:")
    return arn


def policy(resource: PlannedResource, key: str = "policy") -> dict[str, Any]:
    return json.loads(resource.inputs[key])
