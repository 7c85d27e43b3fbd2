"""Resource-level and property-level differences between two plans of one stack."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from plandiff.model import SECRET, PlanSnapshot, Resource
from plandiff.rules import (
    DATA_BEARING_TYPES,
    DB_INSTANCE,
    RISKY_IN_PLACE,
    SUBNET_GROUP,
    camel,
    forces_replacement,
    major_of,
    version_key,
)

_MISSING = object()


@dataclass(frozen=True)
class PropertyChange:
    path: str  # e.g. "storageEncrypted", "parameters[long_query_time].value", "options.protect"
    before: Any  # _MISSING renders as "(absent)"
    after: Any
    replaces: bool = False  # this change forces the provider to replace the resource

    @property
    def top_level(self) -> str:
        return top_level(self.path)


@dataclass(frozen=True)
class ResourceChange:
    resource: Resource  # the head side
    changes: tuple[PropertyChange, ...]

    @property
    def replaces(self) -> bool:
        return any(change.replaces for change in self.changes)


@dataclass(frozen=True)
class Flag:
    kind: str  # stable identifier, e.g. "replacement", "public-access-on"
    subject: str  # what it is about: a resource name or a migration script
    message: str


@dataclass
class StackDiff:
    stack: str
    added: list[Resource] = field(default_factory=list)
    removed: list[Resource] = field(default_factory=list)
    changed: list[ResourceChange] = field(default_factory=list)
    outputs: list[PropertyChange] = field(default_factory=list)
    config: list[PropertyChange] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.outputs or self.config)


def top_level(path: str) -> str:
    """The input property a flattened path belongs to: `parameters[x].value` -> `parameters`."""
    match = re.match(r"[^.\[(]*", path)
    return match.group(0) if match else path


def is_absent(value: Any) -> bool:
    return value is _MISSING


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Leaf values by path. Lists of objects that all carry a `name` (or an IAM `Sid`) are
    keyed by it (`parameters[long_query_time].value`), so a reordering is not a change; a
    string holding a JSON document is flattened too (`policy(json).Statement[...]`)."""
    if isinstance(value, dict) and value:
        leaves: dict[str, Any] = {}
        for key in sorted(value):
            leaves.update(flatten(value[key], f"{path}.{key}" if path else str(key)))
        return leaves
    if isinstance(value, str) and value[:1] in "{[":
        # a JSON document in a string (IAM and key policies): diff it statement by statement
        try:
            document = json.loads(value)
        except ValueError:
            document = None
        if isinstance(document, dict | list) and document:
            return flatten(document, f"{path}(json)")
    if isinstance(value, list) and value:
        for key in ("name", "Sid"):
            if all(isinstance(item, dict) and isinstance(item.get(key), str) for item in value):
                names = [item[key] for item in value]
                if len(set(names)) == len(names):
                    leaves = {}
                    for item in value:
                        rest = {k: v for k, v in item.items() if k != key}
                        leaves.update(flatten(rest or True, f"{path}[{item[key]}]"))
                    return leaves
        if all(not isinstance(item, dict | list) for item in value):
            # a list of scalars: one leaf, compared as a set when order does not matter
            return {path: value}
        leaves = {}
        for index, item in enumerate(value):
            leaves.update(flatten(item, f"{path}[{index}]"))
        return leaves
    return {path: value}


def _same(before: Any, after: Any) -> bool:
    if isinstance(before, list) and isinstance(after, list):
        try:
            return sorted(map(_canonical, before)) == sorted(map(_canonical, after))
        except TypeError:
            return before == after
    return _canonical(before) == _canonical(after)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def property_changes(before: Resource, after: Resource) -> list[PropertyChange]:
    old = flatten(before.inputs)
    new = flatten(after.inputs)
    old.update({f"options.{k}": v for k, v in flatten(before.options).items()})
    new.update({f"options.{k}": v for k, v in flatten(after.options).items()})
    changes = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path, _MISSING), new.get(path, _MISSING)
        if a is not _MISSING and b is not _MISSING and _same(a, b):
            continue
        top = top_level(path)
        replaces = not path.startswith("options.") and forces_replacement(
            after.type, after.options, top
        )
        changes.append(PropertyChange(path, a, b, replaces))
    return changes


def _reading_order(resource: Resource) -> tuple[str, str, str]:
    return (resource.component, resource.name, resource.urn)


def diff_plans(base: PlanSnapshot, head: PlanSnapshot) -> StackDiff:
    """Resources matched by URN; listed by component, then name (a stable reading order)."""
    diff = StackDiff(stack=head.stack)
    diff.added = sorted(
        (head.resources[urn] for urn in set(head.resources) - set(base.resources)),
        key=_reading_order,
    )
    diff.removed = sorted(
        (base.resources[urn] for urn in set(base.resources) - set(head.resources)),
        key=_reading_order,
    )
    for urn in sorted(
        set(base.resources) & set(head.resources), key=lambda u: _reading_order(head.resources[u])
    ):
        changes = property_changes(base.resources[urn], head.resources[urn])
        if changes:
            diff.changed.append(ResourceChange(head.resources[urn], tuple(changes)))
    diff.outputs = _mapping_changes(base.outputs, head.outputs)
    # config keys hold whole values (a parameter map is one key): compare them unflattened
    diff.config = _mapping_changes(base.config, head.config, flat=False)
    diff.flags = resource_flags(diff)
    return diff


def _mapping_changes(
    before: dict[str, Any], after: dict[str, Any], flat: bool = True
) -> list[PropertyChange]:
    old = flatten(before) if flat else dict(before)
    new = flatten(after) if flat else dict(after)
    changes = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path, _MISSING), new.get(path, _MISSING)
        if a is _MISSING or b is _MISSING or not _same(a, b):
            changes.append(PropertyChange(path, a, b))
    return changes


# --- flags ----------------------------------------------------------------------------------


def _get(inputs: dict[str, Any], prop: str) -> Any:
    for key, value in inputs.items():
        if camel(key) == prop:
            return value
    return None


def _is_replica(resource: Resource) -> bool:
    return bool(_get(resource.inputs, "replicateSourceDb"))


def _label(resource: Resource) -> str:
    kind = "read replica" if _is_replica(resource) else "database instance"
    return f"{kind} ({resource.type})" if resource.type == DB_INSTANCE else resource.type


def resource_flags(diff: StackDiff) -> list[Flag]:
    flags: list[Flag] = []
    for resource in diff.removed:
        if resource.type not in DATA_BEARING_TYPES:
            continue
        if _is_replica(resource):
            what = (
                f"the read replica ({resource.type}) is deleted: the reads it serves fail; "
                "it can only be re-created from the primary (a full copy)"
            )
        elif resource.type == DB_INSTANCE:
            what = f"the database instance ({resource.type}) is deleted"
        else:
            what = f"the KMS key ({resource.type}) is deleted"
        flags.append(Flag("deleted", resource.name, what))
    for resource in diff.added:
        if resource.type != DB_INSTANCE:
            continue
        if _get(resource.inputs, "publiclyAccessible") is True:
            flags.append(
                Flag(
                    "public-access-on",
                    resource.name,
                    f"new {_label(resource)} is publicly accessible",
                )
            )
        if _get(resource.inputs, "storageEncrypted") is False:
            flags.append(
                Flag(
                    "encryption-off",
                    resource.name,
                    f"new {_label(resource)} has unencrypted storage",
                )
            )
    for change in diff.changed:
        flags.extend(_change_flags(change))
    # A DB subnet group that is replaced, or removed while another is added (a logical
    # rename), gets a new name: every instance in it has to move (see RISKY_IN_PLACE).
    replaced = [c.resource for c in diff.changed if c.resource.type == SUBNET_GROUP and c.replaces]
    if any(r.type == SUBNET_GROUP for r in diff.added):
        replaced += [r for r in diff.removed if r.type == SUBNET_GROUP]
    for resource in replaced:
        flags.append(
            Flag(
                "subnet-group-replaced",
                resource.name,
                f"the DB subnet group ({SUBNET_GROUP}) is replaced: the database instances in "
                "it move to the new one (downtime; RDS refuses it for Multi-AZ instances)",
            )
        )
    return flags


def _change_flags(change: ResourceChange) -> list[Flag]:
    resource = change.resource
    flags: list[Flag] = []
    protect = next((c for c in change.changes if c.path == "options.protect"), None)
    protect_removed = protect is not None and protect.before is True and protect.after is not True
    if resource.type in DATA_BEARING_TYPES and protect_removed:
        flags.append(
            Flag("protect-off", resource.name, f"{resource.type}: Pulumi `protect` removed")
        )
    if resource.type != DB_INSTANCE:
        return flags
    label = _label(resource)
    replacing = sorted({c.top_level for c in change.changes if c.replaces})
    if replacing:
        consequence = (
            "deleted and re-created from the primary: reads it serves fail meanwhile"
            if _is_replica(resource)
            else "deleted and re-created: its data is lost unless restored from a snapshot"
        )
        flags.append(
            Flag(
                "replacement",
                resource.name,
                f"the {label} is REPLACED ({consequence}) because these properties changed: "
                + ", ".join(replacing),
            )
        )
    by_prop = {camel(c.path): c for c in change.changes if "." not in c.path and "[" not in c.path}
    protection = by_prop.get("deletionProtection")
    if protection and protection.before is True and protection.after is not True:
        flags.append(
            Flag(
                "deletion-protection-off", resource.name, f"{label}: deletion protection turned off"
            )
        )
    public = by_prop.get("publiclyAccessible")
    if public and public.after is True and public.before is not True:
        flags.append(Flag("public-access-on", resource.name, f"{label}: public access turned on"))
    encryption = by_prop.get("storageEncrypted")
    if encryption and encryption.before is True and encryption.after is not True:
        flags.append(
            Flag("encryption-off", resource.name, f"{label}: storage encryption turned off")
        )
    multi_az = by_prop.get("multiAz")
    if multi_az and multi_az.before is True and multi_az.after is not True:
        flags.append(
            Flag(
                "multi-az-off",
                resource.name,
                f"{label}: Multi-AZ turned off: the synchronous standby is removed, so a zone "
                "or host failure means downtime and possible loss of recent writes (FSBP RDS.5)",
            )
        )
    flags.extend(_engine_flags(resource, label, by_prop.get("engineVersion")))
    final = by_prop.get("skipFinalSnapshot")
    if final and final.after is True and final.before is not True and not _is_replica(resource):
        flags.append(
            Flag("final-snapshot-off", resource.name, f"{label}: no final snapshot on deletion")
        )
    retention = by_prop.get("backupRetentionPeriod")
    if retention and isinstance(retention.before, int):
        after = retention.after if isinstance(retention.after, int) else None
        if after is None or after < retention.before:
            shown = "unset" if after is None else str(after)
            flags.append(
                Flag(
                    "backup-retention-lowered",
                    resource.name,
                    f"{label}: backup retention lowered from {retention.before} to {shown} days",
                )
            )
    for prop, why in RISKY_IN_PLACE.get(resource.type, {}).items():
        if prop in by_prop and not by_prop[prop].replaces:
            flags.append(Flag("risky-change", resource.name, f"{label}: {why}"))
    return flags


def _engine_flags(resource: Resource, label: str, change: PropertyChange | None) -> list[Flag]:
    """A major upgrade (what will happen to the instance), or a version lower than before."""
    if change is None or not isinstance(change.before, str) or not isinstance(change.after, str):
        return []
    before, after = change.before, change.after
    if version_key(after) < version_key(
        before[: len(after)] if len(after) < len(before) else before
    ):
        return [
            Flag(
                "engine-downgrade",
                resource.name,
                f"{label}: engine version goes from {before} to {after}: RDS refuses "
                "downgrades; configure the major version (e.g. 8.4) and let RDS own the minor",
            )
        ]
    if major_of(before) == major_of(after):
        return []
    moving = f"MySQL {major_of(before)} to {major_of(after)}"
    blue_green = _get(resource.inputs, "blueGreenUpdate")
    if _is_replica(resource):
        what = (
            f"read replica upgraded in place from {moving}: its reads are unavailable during "
            "the upgrade (downtime for them); replicas go first, their primary in a later update"
        )
    elif isinstance(blue_green, dict) and blue_green.get("enabled") is True:
        what = (
            f"upgraded from {moving} by an RDS Blue/Green deployment: a green copy is created "
            "and kept in sync, then a switchover (writes blocked, typically under a minute; "
            "the endpoint stays), then the provider deletes the old instance without a final "
            "snapshot"
        )
    else:
        what = (
            f"upgraded from {moving} in place: the instance is unavailable for the whole "
            "upgrade (downtime expected; a Multi-AZ standby is upgraded at the same time), in "
            "the maintenance window unless appdb:applyImmediately"
        )
    return [Flag("major-upgrade", resource.name, f"{label}: {what}")]


def is_secret(value: Any) -> bool:
    return value == SECRET
