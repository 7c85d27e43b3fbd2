"""The authentication plugin of the accounts the stack creates or re-passwords.

RDS for MySQL 8.4 ships with mysql_native_password disabled and caching_sha2_password as the
default (authentication_policy `*:caching_sha2_password`), while RDS for MySQL 8.0 created
accounts with mysql_native_password. A plain `ALTER USER ... IDENTIFIED BY` keeps an account's
plugin, so an account made on 8.0 would stay unusable after an upgrade to 8.4: on MySQL the
rotation names caching_sha2_password explicitly. MariaDB (the test server) has no such plugin,
so there the statement keeps the server's default; the real-server half of this runs below."""

from __future__ import annotations

import pymysql
import pytest

from rotation.database import identified_by, server_identified_by
from standins.mariadb import MariaDBServer


@pytest.mark.parametrize(
    ("version", "clause"),
    [
        ("8.4.6", "IDENTIFIED WITH caching_sha2_password BY %s"),
        ("8.0.43", "IDENTIFIED WITH caching_sha2_password BY %s"),
        ("8.4.6-log", "IDENTIFIED WITH caching_sha2_password BY %s"),
        ("10.11.14-MariaDB-0+deb12u2", "IDENTIFIED BY %s"),
        ("11.4.5-MariaDB", "IDENTIFIED BY %s"),
    ],
)
def test_mysql_gets_caching_sha2_and_mariadb_its_default(version, clause):
    assert identified_by(version) == clause


def test_against_mariadb_the_clause_creates_a_working_account(mariadb: MariaDBServer) -> None:
    admin = pymysql.connect(
        host=mariadb.host,
        port=mariadb.port,
        user=mariadb.admin_user,
        password=mariadb.admin_password,
        ssl={"ca": str(mariadb.ca_path)},
        autocommit=True,
    )
    try:
        with admin.cursor() as cursor:
            clause = server_identified_by(cursor)
            assert clause == "IDENTIFIED BY %s"
            cursor.execute(
                f"CREATE USER IF NOT EXISTS 'auth_probe'@'%%' {clause} REQUIRE SSL", ("pw-1-probe",)
            )
            cursor.execute(f"ALTER USER 'auth_probe'@'%%' {clause} REQUIRE SSL", ("pw-2-probe",))
        probe = pymysql.connect(
            host=mariadb.host,
            port=mariadb.port,
            user="auth_probe",
            password="pw-2-probe",
            ssl={"ca": str(mariadb.ca_path)},
        )
        probe.close()
    finally:
        with admin.cursor() as cursor:
            cursor.execute("DROP USER IF EXISTS 'auth_probe'@'%'")
        admin.close()
