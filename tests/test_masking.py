"""Password literals in pending statements are masked, in every syntax MySQL 8.4 has, wherever
the project shows a statement: the plan diff's first lines and `scripts/migrate plan`."""

from __future__ import annotations

from pathlib import Path

import pytest
from migrator_support import run_cli, write_migrations

from migrator.masking import MASK, mask_passwords
from plandiff.migrations import diff_migrations, first_line
from standins.mariadb import MariaDBServer

CANARY = "Canary-p4ss"

# Every statement MySQL 8.4 (and RDS's stored procedures) takes a cleartext password or an
# authentication string in. https://dev.mysql.com/doc/refman/8.4/en/create-user.html,
# .../alter-user.html, .../set-password.html, .../change-replication-source-to.html,
# .../start-replica.html, .../start-group-replication.html, .../create-server.html,
# .../clone.html; https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/mysql-stored-proc-replicating.html
STATEMENTS = {
    "create user identified by": f"CREATE USER 'app'@'%' IDENTIFIED BY '{CANARY}'",
    "identified with plugin by": (
        f"CREATE USER app IDENTIFIED WITH caching_sha2_password BY '{CANARY}'"
    ),
    "identified with quoted plugin by": (
        f"ALTER USER app IDENTIFIED WITH 'mysql_native_password' BY \"{CANARY}\""
    ),
    "identified with plugin as hash": (
        f"CREATE USER app IDENTIFIED WITH caching_sha2_password AS '{CANARY}'"
    ),
    "identified by password hash (5.7)": f"GRANT ALL ON *.* TO u IDENTIFIED BY PASSWORD '{CANARY}'",
    "second factor": (
        f"CREATE USER u IDENTIFIED BY 'x1' AND IDENTIFIED WITH authentication_ldap_simple "
        f"BY '{CANARY}'"
    ),
    "initial authentication": (
        f"CREATE USER u IDENTIFIED WITH authentication_webauthn INITIAL AUTHENTICATION "
        f"IDENTIFIED BY '{CANARY}'"
    ),
    "alter user replace current": (
        f"ALTER USER CURRENT_USER() IDENTIFIED BY 'new-one' REPLACE '{CANARY}' "
        "RETAIN CURRENT PASSWORD"
    ),
    "set password =": f"SET PASSWORD = '{CANARY}'",
    "set password for user =": f"SET PASSWORD FOR 'app'@'%' = '{CANARY}'",
    "set password replace": f"SET PASSWORD FOR app = 'new-one' REPLACE '{CANARY}'",
    "set password = password()": f"SET PASSWORD FOR app = PASSWORD('{CANARY}')",
    "change master to": (
        f"CHANGE MASTER TO MASTER_HOST='db', MASTER_USER='repl', MASTER_PASSWORD='{CANARY}'"
    ),
    "change replication source to": (
        f"CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'db', SOURCE_PASSWORD = '{CANARY}' "
        "FOR CHANNEL 'c1'"
    ),
    "start replica credentials": f"START REPLICA USER='repl' PASSWORD='{CANARY}'",
    "start group replication": (
        f"START GROUP_REPLICATION USER='rec', PASSWORD='{CANARY}', DEFAULT_AUTH='x'"
    ),
    "create server options": (
        f"CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (USER 'remote', "
        f"PASSWORD '{CANARY}', HOST 'h')"
    ),
    "alter server options": f"ALTER SERVER s OPTIONS (PASSWORD '{CANARY}')",
    "clone instance": (
        f"CLONE INSTANCE FROM 'donor'@'db':3306 IDENTIFIED BY '{CANARY}' DATA DIRECTORY = '/d'"
    ),
    "rds_set_external_master": (
        f"CALL mysql.rds_set_external_master('db', 3306, 'repl', '{CANARY}', 'bin.000001', 4, 1)"
    ),
    "rds_set_external_source_with_auto_position": (
        f"call mysql.rds_set_external_source_with_auto_position('db', 3306, 'repl', "
        f"'{CANARY}', 1, 0)"
    ),
    "introducer and comment": (f"CREATE USER u IDENTIFIED /* plain */ BY _utf8mb4'{CANARY}'"),
    "versioned comment": f"/*!80000 CREATE USER u IDENTIFIED BY '{CANARY}' */",
    "escaped quotes": f"CREATE USER u IDENTIFIED BY 'it''s {CANARY} \\' still'",
    "literal spanning lines": f"CREATE USER u IDENTIFIED BY 'first\n{CANARY}'",
    "dynamic sql in a literal": (f"SET @s = 'CREATE USER u IDENTIFIED BY ''{CANARY}'''"),
}


@pytest.mark.parametrize("statement", STATEMENTS.values(), ids=STATEMENTS.keys())
def test_no_password_syntax_survives_masking(statement):
    masked = mask_passwords(statement)
    assert CANARY not in masked
    assert MASK in masked


@pytest.mark.parametrize("statement", STATEMENTS.values(), ids=STATEMENTS.keys())
def test_plan_diff_first_lines_show_no_password(statement):
    # The first line the plan diff shows, for a statement starting on the first line or later.
    assert CANARY not in first_line(statement)
    assert CANARY not in first_line("\n\n" + statement.replace(" BY ", "\nBY ", 1))


def test_masking_keeps_everything_else():
    sql = (
        "CREATE USER 'app'@'%' IDENTIFIED BY 'p' PASSWORD EXPIRE INTERVAL 90 DAY "
        "COMMENT 'by the book'"
    )
    assert mask_passwords(sql) == (
        "CREATE USER 'app'@'%' IDENTIFIED BY '[secret]' PASSWORD EXPIRE INTERVAL 90 DAY "
        "COMMENT 'by the book'"
    )
    untouched = [
        "INSERT INTO t (password) VALUES ('not a clause')",
        "SELECT REPLACE(name, 'a', 'b') FROM users WHERE note = 'IDENTIFIED BY'",
        "UPDATE accounts SET password_hash = 'x' WHERE id = 1",
        "-- IDENTIFIED BY 'comment only'\nSELECT 1",
        "CREATE USER u IDENTIFIED BY RANDOM PASSWORD",
        "SET PASSWORD FOR u TO RANDOM",
    ]
    for statement in untouched:
        assert mask_passwords(statement) == statement, statement
    assert mask_passwords("CALL mysql.rds_set_external_source('h', 1, 'u', 'pw', 'f', 4, 1)") == (
        "CALL mysql.rds_set_external_source('h', 1, 'u', '[secret]', 'f', 4, 1)"
    )


def test_plan_diff_pending_migrations_show_no_password(tmp_path):
    schema = tmp_path / "head" / "schema"
    schema.mkdir(parents=True)
    (schema / "V9__replication.sql").write_text(
        "\n".join(f"{s};" for s in STATEMENTS.values() if "/*!" not in s), encoding="utf-8"
    )
    result = diff_migrations(tmp_path / "base", tmp_path / "head")
    (pending,) = result.pending
    assert len(pending.statements) == len(STATEMENTS) - 1
    assert all(CANARY not in s.first_line for s in pending.statements)


def test_migrate_plan_prints_no_password(mariadb: MariaDBServer, database: str, tmp_path: Path):
    body = ";\n".join(STATEMENTS.values()) + ";\n"
    location = write_migrations(tmp_path, {"V1__accounts.sql": body})
    common = ["--dsn", mariadb.dsn(database), "--ca-bundle", str(mariadb.ca_path)]
    plan = run_cli("plan", *common, "--locations", str(location))
    assert plan.returncode == 0, plan.stderr
    assert "-- V1__accounts.sql" in plan.stdout
    assert plan.stdout.count(MASK) >= len(STATEMENTS)
    assert CANARY not in plan.stdout + plan.stderr
