"""Connections for rotation, over the migration engine's verified-TLS connect with retry."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pymysql

from migrator.connection import ConnectionSettings, connect
from migrator.errors import AuthenticationFailed, ConnectionFailed, SecretError
from migrator.secrets import DatabaseSecret, database_secret_from
from rotation.errors import RotationError

__all__ = [
    "AuthenticationFailed",
    "ConnectionFailed",
    "connect_as",
    "connect_as_master",
    "identified_by",
    "parse",
    "probe_login",
    "server_identified_by",
]

# The password clause of CREATE/ALTER USER. On MySQL the plugin is named: RDS for MySQL 8.4 has
# mysql_native_password disabled and caching_sha2_password as its default (authentication_policy
# "*:caching_sha2_password"; https://dev.mysql.com/doc/refman/8.4/en/native-pluggable-
# authentication.html), while RDS for MySQL 8.0 made accounts with mysql_native_password, and a
# plain `IDENTIFIED BY` keeps an account's plugin. Naming it moves every account the stack
# rotates onto a plugin 8.4 enables (before an 8.0 -> 8.4 upgrade too: 8.0 has it as well).
# MariaDB, the test server, has no caching_sha2_password: there the clause keeps the server's
# default (its own mysql_native_password), which is the one difference relied on here.
MYSQL_PASSWORD_CLAUSE = "IDENTIFIED WITH caching_sha2_password BY %s"
MARIADB_PASSWORD_CLAUSE = "IDENTIFIED BY %s"


def identified_by(server_version: str) -> str:
    """The password clause for a server reporting `server_version` (SELECT VERSION())."""
    return MARIADB_PASSWORD_CLAUSE if "mariadb" in server_version.lower() else MYSQL_PASSWORD_CLAUSE


def server_identified_by(cursor: pymysql.cursors.Cursor) -> str:
    cursor.execute("SELECT VERSION()")
    row = cursor.fetchone()
    return identified_by(str(row[0] if row else ""))


def parse(secret_arn: str, value: dict[str, Any]) -> DatabaseSecret:
    """The RDS secret shape, validated by the engine's parser (errors never echo the value)."""
    try:
        return database_secret_from(secret_arn, value)
    except SecretError as exc:
        raise RotationError(str(exc)) from None


def connect_as(
    secret: DatabaseSecret,
    *,
    password: str | None = None,
    host: str | None = None,
    port: int | None = None,
    database: str = "",
    ca_bundle: str | None = None,
    connect_deadline: float = 300.0,
) -> pymysql.connections.Connection:
    """Connect with the secret's user (optionally another password/endpoint)."""
    return connect(
        ConnectionSettings(
            host=host or secret.host,
            port=port or secret.port,
            user=secret.username,
            password=secret.password if password is None else password,
            database=database,
            ca_bundle=ca_bundle,
            connect_deadline=connect_deadline,
        )
    )


def probe_login(
    secret: DatabaseSecret, *, database: str = "", ca_bundle: str | None, connect_deadline: float
) -> None:
    """testSecret: a fresh connection with the secret's credentials runs a query (raises
    ConnectionFailed/AuthenticationFailed as `connect` does)."""
    probe = connect_as(
        secret, database=database, ca_bundle=ca_bundle, connect_deadline=connect_deadline
    )
    try:
        with probe.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        probe.close()


def connect_as_master(
    fetch_master: Callable[[], DatabaseSecret],
    *,
    ca_bundle: str | None,
    connect_deadline: float,
    database: str = "",
) -> pymysql.connections.Connection:
    """Connect with the master secret's AWSCURRENT value; if the server rejects it, read the
    secret once more and retry (a master rotation may have just promoted a new password)."""
    connect = functools.partial(
        connect_as, database=database, ca_bundle=ca_bundle, connect_deadline=connect_deadline
    )
    try:
        return connect(fetch_master())
    except AuthenticationFailed:
        return connect(fetch_master())
