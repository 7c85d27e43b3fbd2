"""Secrets Manager and the pre-migration RDS snapshot, against moto's server."""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path

import boto3
import pytest
from migrator_support import migrator_for, run_cli, settings_for, tables, write_migrations
from support_aws import create_secret, rds_secret

from migrator.discovery import load_migrations
from migrator.engine import MigrationOptions, Migrator
from migrator.errors import SecretError
from migrator.secrets import fetch_database_secret
from migrator.snapshot import SnapshotSettings, snapshot_identifier
from standins.mariadb import MariaDBServer


def _unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


def test_fetch_database_secret_through_aws_endpoint_url(aws: str) -> None:
    assert os.environ["AWS_ENDPOINT_URL"] == aws  # boto3 itself picks this up
    value = {
        "engine": "mysql",
        "host": "db.internal",
        "port": 3306,
        "username": "admin",
        "password": "s3cr3t-value",
        "dbname": "appdb",
        "dbInstanceIdentifier": "appdb-staging",
    }
    arn = create_secret(value)
    secret = fetch_database_secret(arn)
    assert (secret.host, secret.port, secret.username, secret.password) == (
        "db.internal",
        3306,
        "admin",
        "s3cr3t-value",
    )
    assert (secret.dbname, secret.dbInstanceIdentifier) == ("appdb", "appdb-staging")
    assert "s3cr3t-value" not in repr(secret)


def test_missing_secret_names_the_arn(aws: str) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:appdb/nope-AbCdEf"
    with pytest.raises(SecretError) as caught:
        fetch_database_secret(arn)
    assert str(caught.value) == f"secret {arn}: not found (AWSCURRENT)"


def test_malformed_secret_json_names_the_arn_not_the_value(aws: str) -> None:
    arn = create_secret(raw='{"username": "admin", "password": "leaky-pw"')
    with pytest.raises(SecretError) as caught:
        fetch_database_secret(arn)
    message = str(caught.value)
    assert message.startswith(f"secret {arn}: value is not valid JSON")
    assert "leaky-pw" not in message


def test_secret_missing_keys_is_named(aws: str) -> None:
    arn = create_secret({"username": "admin", "password": "pw-9"})
    with pytest.raises(SecretError, match=r"missing key\(s\) host") as caught:
        fetch_database_secret(arn)
    assert "pw-9" not in str(caught.value)


def test_cli_migrates_with_credentials_from_the_secret(
    aws: str, mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    arn = create_secret(rds_secret(mariadb, mariadb.admin_user, mariadb.admin_password, database))
    location = write_migrations(tmp_path, {"V1__a.sql": "CREATE TABLE from_secret (x INT);"})
    result = run_cli(
        "migrate",
        "--secret-arn",
        arn,
        "--region",
        "us-east-1",
        "--ca-bundle",
        str(mariadb.ca_path),
        "--locations",
        str(location),
    )
    assert result.returncode == 0, result.stderr
    assert "applied V1__a.sql" in result.stdout
    assert mariadb.admin_password not in result.stdout + result.stderr
    assert "from_secret" in tables(mariadb, database)


def test_snapshot_identifier_follows_rds_rules() -> None:
    now = datetime.datetime(2026, 11, 25, 12, 30, 5, tzinfo=datetime.UTC)
    assert snapshot_identifier("appdb-production", "3", now) == (
        "appdb-production-pre-v3-20261125123005"
    )
    odd = snapshot_identifier("1_weird--name-", "1.10", now)
    assert re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", odd) and "--" not in odd
    assert odd.endswith("-pre-v1-10-20261125123005")
    assert len(snapshot_identifier("x" * 300, "2", now)) <= 255


def _rds_instance() -> str:
    ident = _unique("appdb-snap")
    boto3.client("rds").create_db_instance(
        DBInstanceIdentifier=ident,
        Engine="mysql",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="admin",
        MasterUserPassword="not-used-here-1",
    )
    return ident


def _manual_snapshots(instance: str) -> list[dict]:
    rds = boto3.client("rds")
    return rds.describe_db_snapshots(DBInstanceIdentifier=instance, SnapshotType="manual")[
        "DBSnapshots"
    ]


def test_snapshot_is_taken_before_applying_and_only_when_something_is_pending(
    aws: str, mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    instance = _rds_instance()
    location = write_migrations(
        tmp_path, {"V1__a.sql": "CREATE TABLE a (x INT);", "V2__b.sql": "CREATE TABLE b (x INT);"}
    )
    options = MigrationOptions(
        snapshot=SnapshotSettings(instance_identifier=instance, poll_interval=1, wait_timeout=30)
    )
    migrator = Migrator(settings_for(mariadb, database), load_migrations(location), options)
    result = migrator.migrate()
    assert result.applied == ["V1__a.sql", "V2__b.sql"]
    assert result.snapshot_id is not None
    assert result.snapshot_id.startswith(f"{instance}-pre-v2-")
    rds = boto3.client("rds")
    snapshots = rds.describe_db_snapshots(DBInstanceIdentifier=instance, SnapshotType="manual")[
        "DBSnapshots"
    ]
    assert [(s["DBSnapshotIdentifier"], s["Status"]) for s in snapshots] == [
        (result.snapshot_id, "available")
    ]
    # Nothing pending: no snapshot.
    again = Migrator(settings_for(mariadb, database), load_migrations(location), options).migrate()
    assert again.snapshot_id is None
    assert (
        len(
            rds.describe_db_snapshots(DBInstanceIdentifier=instance, SnapshotType="manual")[
                "DBSnapshots"
            ]
        )
        == 1
    )


def test_failed_snapshot_means_nothing_is_migrated(
    aws: str, mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(tmp_path, {"V1__a.sql": "CREATE TABLE a (x INT);"})
    migrator = migrator_for(
        mariadb,
        database,
        location,
        snapshot=SnapshotSettings(instance_identifier="appdb-does-not-exist", poll_interval=1),
    )
    with pytest.raises(Exception, match="cannot snapshot RDS instance appdb-does-not-exist"):
        migrator.migrate()
    assert "a" not in tables(mariadb, database)


def _snapshot_settings(instance: str, **extra) -> SnapshotSettings:
    return SnapshotSettings(instance_identifier=instance, poll_interval=1, wait_timeout=30, **extra)


def test_the_snapshot_waits_until_the_instance_is_available(aws: str) -> None:
    """A replica being created from the primary (or any modification) makes the instance
    unavailable, and RDS refuses CreateDBSnapshot then: the snapshot is requested only once
    the instance is `available` again."""
    import threading
    import time

    from migrator.snapshot import create_pre_migration_snapshot

    instance = _rds_instance()
    rds = boto3.client("rds")
    rds.stop_db_instance(DBInstanceIdentifier=instance)
    started: list[datetime.datetime] = []

    def start_later() -> None:
        time.sleep(2.5)
        started.append(datetime.datetime.now(datetime.UTC))
        rds.start_db_instance(DBInstanceIdentifier=instance)

    threading.Thread(target=start_later, daemon=True).start()
    ident = create_pre_migration_snapshot(_snapshot_settings(instance), "7")
    (snapshot,) = _manual_snapshots(instance)
    assert snapshot["DBSnapshotIdentifier"] == ident
    assert started and snapshot["SnapshotCreateTime"] >= started[0].replace(microsecond=0)


def test_only_the_newest_n_pre_migration_snapshots_are_kept_and_no_other(aws: str) -> None:
    from migrator.snapshot import create_pre_migration_snapshot

    instance = _rds_instance()
    rds = boto3.client("rds")
    # Snapshots this stack did not make: someone's manual one, and another tool's.
    rds.create_db_snapshot(
        DBSnapshotIdentifier=f"{instance}-by-hand", DBInstanceIdentifier=instance
    )
    rds.create_db_snapshot(
        DBSnapshotIdentifier=f"{instance}-other-tool",
        DBInstanceIdentifier=instance,
        Tags=[{"Key": "created-by", "Value": "someone-else"}],
    )
    made = [
        create_pre_migration_snapshot(_snapshot_settings(instance, retention=2), version)
        for version in ("1", "2", "3", "4")
    ]
    kept = sorted(s["DBSnapshotIdentifier"] for s in _manual_snapshots(instance))
    assert kept == sorted([f"{instance}-by-hand", f"{instance}-other-tool", *made[-2:]])
