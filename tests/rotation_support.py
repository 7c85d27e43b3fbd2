"""Helpers shared by the rotation tests (not fixtures: plain functions the tests call)."""

from __future__ import annotations

import json
import secrets
from typing import Any

import boto3
import pymysql

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


def create_secret(value: dict[str, Any] | None = None) -> str:
    client = boto3.client("secretsmanager")
    kwargs: dict[str, Any] = {"Name": f"test/{secrets.token_hex(6)}"}
    if value is not None:
        kwargs["SecretString"] = json.dumps(value)
    return client.create_secret(**kwargs)["ARN"]


def master_secret(mariadb: MariaDBServer, user: str, password: str, dbname: str) -> str:
    return create_secret(
        {
            "engine": "mysql",
            "host": mariadb.host,
            "port": mariadb.port,
            "username": user,
            "password": password,
            "dbname": dbname,
            "dbInstanceIdentifier": "appdb-test",
        }
    )


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
