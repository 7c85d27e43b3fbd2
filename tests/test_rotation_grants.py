"""Grant parsing and repair plans, on SHOW GRANTS output as MySQL 8 (RDS) and MariaDB print it.

The MariaDB forms are also exercised against the real server in test_rotation_app_users.py;
these cover the MySQL 8 forms this machine cannot run.
"""

from __future__ import annotations

from rotation.grants import desired_grants, parse_show_grants, repair_statements, schema_target

APP = ("SELECT", "INSERT", "UPDATE", "DELETE", "EXECUTE")


def test_schema_target_escapes_grant_wildcards():
    assert schema_target("app_db") == "`app\\_db`.*"
    assert schema_target("odd`name%") == "`odd``name\\%`.*"


def test_exactly_the_declared_grants_need_nothing():
    rows = [
        "GRANT USAGE ON *.* TO `app_a`@`%`",
        "GRANT SELECT, INSERT, UPDATE, DELETE, EXECUTE ON `app\\_db`.* TO `app_a`@`%`",
    ]
    assert repair_statements("app_a", parse_show_grants(rows), desired_grants("app_db", APP)) == []


def test_missing_and_extra_privileges_on_the_schema():
    rows = ["GRANT SELECT, INSERT, DROP ON `app\\_db`.* TO `app_a`@`%` WITH GRANT OPTION"]
    statements = repair_statements("app_a", parse_show_grants(rows), desired_grants("app_db", APP))
    assert statements == [
        "REVOKE DROP ON `app\\_db`.* FROM `app_a`@'%'",
        "REVOKE GRANT OPTION ON `app\\_db`.* FROM `app_a`@'%'",
        "GRANT DELETE, EXECUTE, UPDATE ON `app\\_db`.* TO `app_a`@'%'",
    ]


def test_grants_anywhere_else_are_revoked_mysql8_forms():
    rows = [
        # MySQL 8 lists static global privileges, then dynamic ones on a line of their own.
        "GRANT PROCESS, RELOAD ON *.* TO `readonly_a`@`%`",
        "GRANT BACKUP_ADMIN ON *.* TO `readonly_a`@`%`",
        "GRANT SELECT ON `app\\_db`.* TO `readonly_a`@`%`",
        "GRANT SELECT (`email`, `name`), UPDATE (`name`) ON `app_db`.`users` TO `readonly_a`@`%`",
        "GRANT EXECUTE ON PROCEDURE `app_db`.`create_user_session` TO `readonly_a`@`%`",
        "GRANT ALL PRIVILEGES ON `other`.* TO `readonly_a`@`%`",
        "GRANT `dba`@`%` TO `readonly_a`@`%`",
        "GRANT PROXY ON ''@'' TO `readonly_a`@`%`",
    ]
    statements = repair_statements(
        "readonly_a", parse_show_grants(rows), desired_grants("app_db", ["SELECT"])
    )
    assert statements == [
        "REVOKE `dba`@`%` FROM `readonly_a`@'%'",
        "REVOKE BACKUP_ADMIN, PROCESS, RELOAD ON *.* FROM `readonly_a`@'%'",
        "REVOKE EXECUTE ON PROCEDURE `app_db`.`create_user_session` FROM `readonly_a`@'%'",
        "REVOKE SELECT (`email`, `name`), UPDATE (`name`) ON `app_db`.`users` "
        "FROM `readonly_a`@'%'",
        "REVOKE ALL PRIVILEGES ON `other`.* FROM `readonly_a`@'%'",
    ]


def test_all_privileges_on_the_schema_is_replaced_by_the_declared_set():
    rows = ["GRANT ALL PRIVILEGES ON `app\\_db`.* TO `app_a`@`%`"]
    statements = repair_statements("app_a", parse_show_grants(rows), desired_grants("app_db", APP))
    assert statements == [
        "REVOKE ALL PRIVILEGES ON `app\\_db`.* FROM `app_a`@'%'",
        "GRANT DELETE, EXECUTE, INSERT, SELECT, UPDATE ON `app\\_db`.* TO `app_a`@'%'",
    ]


def test_describe_is_sorted_lines_for_state():
    grants = parse_show_grants(["GRANT SELECT, INSERT ON `app\\_db`.* TO `app_a`@`%`"])
    assert grants.describe() == ["INSERT ON `app\\_db`.*", "SELECT ON `app\\_db`.*"]
