"""Human-readable renderings of a Plan: the full one (resources grouped by component, key
properties) and a summary (resources per component, what is flagged)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from planner import STACK_COMPONENT, Plan, PlannedResource

# Inputs too long or too noisy for the summary (policies are JSON documents; see --json).
_ELIDED = {"policy", "assumeRolePolicy"}
_MAX_VALUE = 110


def _short_type(type_token: str) -> str:
    # "aws:rds/instance:Instance" -> "aws:rds:Instance"
    package, _, rest = type_token.partition(":")
    module, _, kind = rest.rpartition(":")
    return f"{package}:{module.split('/')[0]}:{kind}" if module else type_token


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


def _properties(resource: PlannedResource, urn_names: dict[str, str]) -> list[str]:
    lines = []
    for key in sorted(resource.inputs):
        value = resource.inputs[key]
        if key in _ELIDED:
            value = f"<{len(json.dumps(value))} characters of JSON>"
        elif isinstance(value, str) and value in urn_names:
            value = f"<{urn_names[value]}>"
        lines.append(f"      {key}: {_value(value)}")
    options = resource.options
    for option in ("ignore_changes", "replace_on_changes"):
        if options.get(option):
            lines.append(f"      ({option}: {', '.join(options[option])})")
    for flag in ("protect", "delete_before_replace", "retain_on_delete"):
        if options.get(flag):
            lines.append(f"      ({flag})")
    return lines


def _groups(plan: Plan) -> dict[str, list[PlannedResource]]:
    groups: dict[str, list[PlannedResource]] = {}
    for resource in plan.resources:
        groups.setdefault(resource.component, []).append(resource)
    return groups


def _reading_order(groups: dict[str, list[PlannedResource]]) -> list[str]:
    return sorted(groups, key=lambda g: (g == STACK_COMPONENT, g))


def _component_head(group: str, members: list[PlannedResource]) -> PlannedResource | None:
    return next((r for r in members if not r.custom and r.name == group), None)


def render_summary(plan: Plan, flags: Sequence[str] = ()) -> str:
    """Resources per component and `flags` (what a reviewer must not miss), in a few lines."""
    groups = _groups(plan)
    rows = []
    for group in _reading_order(groups):
        members = groups[group]
        head = _component_head(group, members)
        custom = [r for r in members if r.custom]
        protected = sum(1 for r in custom if r.options.get("protect"))
        kind = head.type if head else "(outside any component)"
        rows.append([group, kind, str(len(custom)), str(protected or "")])
    total = sum(int(row[2]) for row in rows)
    out = [
        f"Plan for {plan.project}/{plan.stack}: {total} resources in {len(groups)} groups "
        "(offline, mock engine)"
    ]
    headers = ["component", "type", "resources", "protected"]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    right = {2, 3}  # numbers line up on the right
    for row in [headers, *rows]:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append(("  " + "  ".join(cells)).rstrip())
    if flags:
        out.append(f"  flagged ({len(flags)}), as a pull request creating this stack would be:")
        out.extend(f"    FLAG {flag}" for flag in flags)
    else:
        out.append("  flagged: nothing (the pull-request rules, applied to creating this stack)")
    return "\n".join(out) + "\n"


def render_plan(plan: Plan) -> str:
    urn_names = {r.urn: r.name for r in plan.resources}
    groups = _groups(plan)
    custom_count = sum(1 for r in plan.resources if r.custom)
    out = [
        f"Plan for {plan.project}/{plan.stack}: {custom_count} resources in "
        f"{len(groups)} groups (offline, mock engine; secrets shown as [secret])",
        "",
    ]
    for group in _reading_order(groups):
        members = groups[group]
        head = _component_head(group, members)
        title = f"{group} ({head.type})" if head else group
        out.append(f"== {title}")
        for resource in members:
            if not resource.custom:
                if resource is not head:
                    out.append(f"  + {resource.type}  {resource.name}")
                continue
            out.append(f"  + {_short_type(resource.type)}  {resource.name}")
            out.extend(_properties(resource, urn_names))
        out.append("")
    out.append("Outputs:")
    for key in sorted(plan.outputs):
        out.append(f"  {key}: {_value(plan.outputs[key])}")
    return "\n".join(out) + "\n"
