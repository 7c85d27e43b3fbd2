"""Helpers shared by the rotation tests (not fixtures: plain functions the tests call)."""

from __future__ import annotations

import json
import secrets
from typing import Any

import boto3
import pymysql
from support_aws import create_secret, rds_secret

from standins.mariadb import MariaDBServer


def make_master(mariadb: MariaDBServer) -> tuple[str, str]:
    """A master-like account of its own (rotating the shared admin would break other tests)."""
    user, password = f"master_{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
        cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO `{user}`@'%' WITH GRANT OPTION")
    conn.close()
    return user, password


def master_secret(mariadb: MariaDBServer, user: str, password: str, dbname: str) -> str:
    return create_secret(
        rds_secret(mariadb, user, password, dbname, dbInstanceIdentifier="appdb-test")
    )


def master_account(mariadb: MariaDBServer, database: str) -> dict[str, Any]:
    """A master-like account and its secret, whose initial value is what the stack's
    SecretVersion writes when the instance exists: user, password, database and arn."""
    user, password = make_master(mariadb)
    return {
        "user": user,
        "password": password,
        "database": database,
        "arn": master_secret(mariadb, user, password, database),
    }


def stages(secret_arn: str) -> dict[str, list[str]]:
    described = boto3.client("secretsmanager").describe_secret(SecretId=secret_arn)
    return {v: s for v, s in described["VersionIdsToStages"].items() if s}


def value(secret_arn: str, stage: str = "AWSCURRENT") -> dict[str, Any]:
    response = boto3.client("secretsmanager").get_secret_value(
        SecretId=secret_arn, VersionStage=stage
    )
    return json.loads(response["SecretString"])


def can_login(mariadb: MariaDBServer, user: str, password: str, database: str = "") -> bool:
    try:
        mariadb.connect(database=database or None, user=user, password=password).close()
        return True
    except pymysql.err.OperationalError as exc:
        if exc.args[0] == 1045:
            return False
        raise
