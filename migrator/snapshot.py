"""Optional pre-migration RDS snapshot: taken only when there is something to apply.

The identifier is `<instance>-pre-v<target version>-<UTC timestamp>` cleaned up to RDS's rules
(letters, digits, hyphens; starts with a letter; no double or trailing hyphen; <= 255 chars).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from migrator.errors import MigrationError

MAX_IDENTIFIER = 255


@dataclass(frozen=True)
class SnapshotSettings:
    instance_identifier: str
    region: str | None = None
    wait_timeout: float = 3600.0  # seconds until the snapshot must be available
    poll_interval: float = 15.0  # seconds between status checks


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
    """Create the snapshot, wait until it is available, return its identifier."""
    import boto3
    import botocore.exceptions

    ident = snapshot_identifier(settings.instance_identifier, target_version)
    client = boto3.client("rds", region_name=settings.region)
    try:
        client.create_db_snapshot(
            DBSnapshotIdentifier=ident,
            DBInstanceIdentifier=settings.instance_identifier,
            Tags=[{"Key": "created-by", "Value": "appdb-migrator"}],
        )
        delay = max(1, int(settings.poll_interval))
        client.get_waiter("db_snapshot_available").wait(
            DBSnapshotIdentifier=ident,
            WaiterConfig={
                "Delay": delay,
                "MaxAttempts": max(1, int(settings.wait_timeout / delay)),
            },
        )
    except botocore.exceptions.WaiterError as exc:
        raise MigrationError(
            f"pre-migration snapshot {ident} of {settings.instance_identifier} did not become "
            f"available within {settings.wait_timeout:g}s ({exc}); nothing was migrated"
        ) from None
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise MigrationError(
            f"cannot snapshot RDS instance {settings.instance_identifier} before migrating: {exc}; "
            "nothing was migrated"
        ) from None
    return ident
