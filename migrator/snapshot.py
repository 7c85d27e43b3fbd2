"""Optional pre-migration RDS snapshot: taken only when there is something to apply.

The identifier is `<instance>-pre-v<target version>-<UTC timestamp>` cleaned up to RDS's rules
(letters, digits, hyphens; starts with a letter; no double or trailing hyphen; <= 255 chars).

Before the snapshot the instance must be `available`: RDS refuses CreateDBSnapshot while the
instance is being modified, backed up or is the source of a read replica being created (the first
`pulumi up` creates the replicas right before the migrations). After it, only the newest
`retention` pre-migration snapshots of the instance are kept: the older ones this engine made
(tagged `created-by: appdb-migrator`) are deleted, and no other snapshot is ever touched.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from migrator.errors import MigrationError

MAX_IDENTIFIER = 255
CREATED_BY = {"Key": "created-by", "Value": "appdb-migrator"}


@dataclass(frozen=True)
class SnapshotSettings:
    instance_identifier: str
    region: str | None = None
    wait_timeout: float = 3600.0  # seconds until the instance, then the snapshot, is available
    poll_interval: float = 15.0  # seconds between status checks
    retention: int | None = None  # pre-migration snapshots kept; None keeps every one


def snapshot_identifier(
    instance: str, target_version: str | None, now: datetime.datetime | None = None
) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    version = (target_version or "r").replace(".", "-")
    stamp = now.strftime("%Y%m%d%H%M%S")
    suffix = f"-pre-v{version}-{stamp}"
    base = re.sub(r"[^A-Za-z0-9-]", "-", instance)[: MAX_IDENTIFIER - len(suffix)]
    ident = re.sub(r"-{2,}", "-", base + suffix).strip("-")
    if not ident[:1].isalpha():
        ident = ("s" + ident)[:MAX_IDENTIFIER]
    return ident.lower()


def create_pre_migration_snapshot(settings: SnapshotSettings, target_version: str | None) -> str:
    """Wait for the instance, create the snapshot, wait until it is available, prune the older
    pre-migration snapshots beyond `retention`; return the new snapshot's identifier."""
    import boto3
    import botocore.exceptions

    ident = snapshot_identifier(settings.instance_identifier, target_version)
    client = boto3.client("rds", region_name=settings.region)
    delay = max(1, int(settings.poll_interval))
    waiting = {"Delay": delay, "MaxAttempts": max(1, int(settings.wait_timeout / delay))}
    step = "the instance did not become available"
    try:
        client.get_waiter("db_instance_available").wait(
            DBInstanceIdentifier=settings.instance_identifier, WaiterConfig=waiting
        )
        step = f"the snapshot {ident} did not become available"
        client.create_db_snapshot(
            DBSnapshotIdentifier=ident,
            DBInstanceIdentifier=settings.instance_identifier,
            Tags=[CREATED_BY],
        )
        client.get_waiter("db_snapshot_available").wait(
            DBSnapshotIdentifier=ident, WaiterConfig=waiting
        )
    except botocore.exceptions.WaiterError as exc:
        raise MigrationError(
            f"cannot snapshot RDS instance {settings.instance_identifier} before migrating: "
            f"{step} within {settings.wait_timeout:g}s ({exc}); nothing was migrated"
        ) from None
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise MigrationError(
            f"cannot snapshot RDS instance {settings.instance_identifier} before migrating: {exc}; "
            "nothing was migrated"
        ) from None
    if settings.retention is not None:
        prune_pre_migration_snapshots(client, settings.instance_identifier, settings.retention)
    return ident


def prune_pre_migration_snapshots(client: Any, instance: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` manual snapshots of `instance` that carry this engine's
    tag; return the deleted identifiers. A failed deletion does not fail the migration run: the
    snapshot stays and the next run tries again."""
    import botocore.exceptions

    ours = []
    pages = client.get_paginator("describe_db_snapshots").paginate(
        DBInstanceIdentifier=instance, SnapshotType="manual"
    )
    for page in pages:
        for snapshot in page["DBSnapshots"]:
            tags = snapshot.get("TagList")
            if tags is None:
                tags = client.list_tags_for_resource(ResourceName=snapshot["DBSnapshotArn"])[
                    "TagList"
                ]
            if CREATED_BY in tags and snapshot.get("Status") == "available":
                ours.append(snapshot)
    ours.sort(key=lambda s: (s["SnapshotCreateTime"], s["DBSnapshotIdentifier"]), reverse=True)
    deleted = []
    for snapshot in ours[max(0, keep) :]:
        try:
            client.delete_db_snapshot(DBSnapshotIdentifier=snapshot["DBSnapshotIdentifier"])
        except botocore.exceptions.ClientError:
            continue
        deleted.append(snapshot["DBSnapshotIdentifier"])
    return deleted
