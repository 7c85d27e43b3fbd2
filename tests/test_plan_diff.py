"""The offline plan diff (plandiff/, scripts/plan-diff).

Part 1 works on synthetic plans and migration folders (fast). Part 2 builds a small git
history from the project's real files in a temp dir and diffs real plans; the plans are
computed once per (revision, stack) in module-scoped fixtures and shared by the assertions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from plandiff import (
    REPLACE_FORCING,
    PlanSnapshot,
    Resource,
    destructive_operations,
    diff_migrations,
    diff_plans,
)
from plandiff.migrations import mask_passwords
from plandiff.render import StackReport, render_report

INSTANCE = "aws:rds/instance:Instance"
PARAMS = "aws:rds/parameterGroup:ParameterGroup"


def resource(type_: str, name: str, component: str = "database", **inputs) -> Resource:
    return Resource(
        urn=f"urn:pulumi:production::appdb::{type_}::{name}",
        type=type_,
        name=name,
        component=component,
        inputs=inputs,
    )


def snapshot(*resources: Resource, outputs: dict | None = None) -> PlanSnapshot:
    return PlanSnapshot("production", {r.urn: r for r in resources}, outputs or {})


PRIMARY = dict(
    engine="mysql",
    engineVersion="8.0.40",
    identifier="appdb-production",
    instanceClass="db.r6g.large",
    storageEncrypted=True,
    kmsKeyId="arn:aws:kms:us-east-1:123456789012:key/k",
    deletionProtection=True,
    publiclyAccessible=False,
    backupRetentionPeriod=30,
    password="[secret]",
    dbSubnetGroupName="appdb-production",
    tags={"Environment": "production"},
)


def report_of(base: PlanSnapshot, head: PlanSnapshot, migrations=None) -> StackReport:
    from plandiff.migrations import MigrationDiff

    return StackReport("production", diff_plans(base, head), migrations or MigrationDiff("schema"))


def kinds(report: StackReport) -> list[str]:
    return sorted(flag.kind for flag in report.flags)


# --- part 1: synthetic plans ----------------------------------------------------------------


def test_identical_plans_make_an_empty_report():
    plan = snapshot(resource(INSTANCE, "primary", **PRIMARY))
    report = report_of(plan, plan)
    assert report.is_empty and not report.flags
    text = render_report([report], "`main`", "working tree")
    assert "No infrastructure or schema changes." in text
    assert "## `production`: no changes" in text


def test_added_removed_and_changed_with_property_level_before_after():
    base = snapshot(
        resource(INSTANCE, "primary", **PRIMARY),
        resource(
            PARAMS,
            "params",
            parameters=[
                {"name": "long_query_time", "value": "2"},
                {"name": "slow_query_log", "value": "1"},
            ],
        ),
        resource("aws:cloudwatch/logGroup:LogGroup", "old-logs", component="network"),
    )
    head = snapshot(
        resource(INSTANCE, "primary", **PRIMARY),
        # reordered and one value changed: only the value is a change
        resource(
            PARAMS,
            "params",
            parameters=[
                {"name": "slow_query_log", "value": "1"},
                {"name": "long_query_time", "value": "1"},
            ],
        ),
        resource(INSTANCE, "replica-2", replicateSourceDb="appdb-production"),
    )
    report = report_of(base, head)
    assert [r.name for r in report.resources.added] == ["replica-2"]
    assert [r.name for r in report.resources.removed] == ["old-logs"]
    (change,) = report.resources.changed
    assert [(c.path, c.before, c.after) for c in change.changes] == [
        ("parameters[long_query_time].value", "2", "1")
    ]
    assert not report.flags  # a replica and a parameter are routine
    text = render_report([report], "`main`", "working tree")
    assert '| `parameters[long_query_time].value` | `"2"` | `"1"` |' in text
    assert "1 to add, 1 to remove, 1 to change" in text
    assert "No flagged changes." in text


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("storageEncrypted", False),
        ("engine", "mariadb"),
        ("identifier", "appdb-prod-2"),
        ("kmsKeyId", "arn:aws:kms:us-east-1:123456789012:key/other"),
        ("username", "root2"),
        ("availabilityZone", "us-east-1b"),
    ],
)
def test_replace_forcing_changes_on_a_database_instance_are_flagged(prop, value):
    base = snapshot(resource(INSTANCE, "primary", **PRIMARY))
    head = snapshot(resource(INSTANCE, "primary", **{**PRIMARY, prop: value}))
    report = report_of(base, head)
    assert "replacement" in kinds(report)
    (flag,) = [f for f in report.flags if f.kind == "replacement"]
    assert prop in flag.message and "REPLACED" in flag.message
    (change,) = report.resources.changed
    assert change.replaces
    assert "forces replacement" in render_report([report], "b", "h")


def test_in_place_instance_changes_are_not_replacements():
    base = snapshot(resource(INSTANCE, "primary", **PRIMARY))
    head = snapshot(resource(INSTANCE, "primary", **{**PRIMARY, "instanceClass": "db.r6g.xlarge"}))
    report = report_of(base, head)
    assert not report.flags
    assert not report.resources.changed[0].replaces


def test_the_replace_forcing_table_covers_what_the_issue_names():
    assert {"engine", "identifier", "storageEncrypted", "kmsKeyId", "username"} <= REPLACE_FORCING[
        INSTANCE
    ]
    assert {"name"} <= REPLACE_FORCING["aws:rds/subnetGroup:SubnetGroup"]


def test_protection_public_access_backup_and_subnet_group_flags():
    base = snapshot(resource(INSTANCE, "primary", **PRIMARY))
    head = snapshot(
        resource(
            INSTANCE,
            "primary",
            **{
                **PRIMARY,
                "deletionProtection": False,
                "publiclyAccessible": True,
                "backupRetentionPeriod": 7,
                "dbSubnetGroupName": "other",
            },
        )
    )
    report = report_of(base, head)
    assert kinds(report) == [
        "backup-retention-lowered",
        "deletion-protection-off",
        "public-access-on",
        "risky-change",
    ]
    text = render_report([report], "b", "h")
    assert "backup retention lowered from 30 to 7 days" in text
    # raising retention, or turning protection on, is not flagged
    report = report_of(head, base)
    assert "backup-retention-lowered" not in kinds(report)
    assert "deletion-protection-off" not in kinds(report)


def test_deleting_the_primary_is_flagged_but_not_a_replica():
    primary = resource(INSTANCE, "primary", **PRIMARY)
    replica = resource(INSTANCE, "replica-1", replicateSourceDb="appdb-production")
    assert kinds(report_of(snapshot(primary, replica), snapshot(primary))) == []
    assert kinds(report_of(snapshot(primary, replica), snapshot(replica))) == ["deleted"]


def test_secrets_stay_masked_and_replace_on_changes_options_count():
    base_res = resource(
        "appdb:credentials:Rotation",
        "rotation",
        component="credentials",
        rotation="2026-10",
        password="[secret]",
    )
    head_res = Resource(
        **{
            **vars(base_res),
            "inputs": {"rotation": "2026-11", "password": "[secret]"},
            "options": {"replace_on_changes": ["rotation"]},
        }
    )
    report = report_of(snapshot(base_res), snapshot(head_res))
    (change,) = report.resources.changed
    paths = {c.path: c for c in change.changes}
    assert paths["rotation"].replaces
    assert "password" not in paths  # "[secret]" on both sides: nothing to show
    text = render_report([report], "b", "h")
    assert "options.replace_on_changes" in text


def test_outputs_are_diffed_and_secret_outputs_stay_masked():
    base = snapshot(outputs={"port": 3306, "secretArn": "[secret]"})
    head = snapshot(outputs={"port": 3307, "secretArn": "[secret]"})
    report = report_of(base, head)
    assert [(c.path, c.before, c.after) for c in report.resources.outputs] == [("port", 3306, 3307)]


def test_rendering_is_deterministic_and_escapes_markdown():
    base = snapshot(resource(INSTANCE, "primary", **PRIMARY))
    head = snapshot(resource(INSTANCE, "primary", **{**PRIMARY, "tags": {"Environment": "a|b`c"}}))
    texts = {render_report([report_of(base, head)], "b", "h") for _ in range(3)}
    (text,) = texts
    assert "a\\|b`c" in text  # a pipe cannot break the table


# --- destructive statements -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("DROP TABLE users", ["DROP TABLE"]),
        ("drop table if exists `users`", ["DROP TABLE"]),
        ("DROP DATABASE appdb", ["DROP DATABASE"]),
        ("DROP SCHEMA appdb", ["DROP DATABASE"]),
        ("ALTER TABLE users DROP COLUMN name", ["DROP COLUMN"]),
        ("ALTER TABLE users ADD x INT, DROP legacy", ["DROP COLUMN"]),
        ("TRUNCATE TABLE user_sessions", ["TRUNCATE"]),
        ("/*!40000 DROP TABLE t */", ["DROP TABLE"]),  # versioned comments execute
        ("DROP TEMPORARY TABLE scratch", []),
        ("ALTER TABLE users DROP INDEX idx_email", []),
        ("ALTER TABLE users ALTER COLUMN name DROP DEFAULT", []),
        ("ALTER TABLE users DROP FOREIGN KEY fk", []),
        ("INSERT INTO audit (note) VALUES ('DROP TABLE users; TRUNCATE x')", []),
        ("SELECT 1 /* DROP TABLE users */", []),
        ("SELECT 1 -- DROP TABLE users", []),
        ("SELECT `drop table` FROM t", []),
        ("DROP PROCEDURE IF EXISTS create_user_session", []),
    ],
)
def test_destructive_statement_detection(sql, expected):
    assert destructive_operations(sql) == expected


def write(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)


def test_pending_migrations_new_changed_removed_and_flags(tmp_path):
    base, head = tmp_path / "base", tmp_path / "head"
    write(base / "schema", "V1__users.sql", "CREATE TABLE users (id INT);\n")
    write(base / "schema", "V2__more.sql", "ALTER TABLE users ADD name TEXT;\n")
    write(base / "schema", "R__views.sql", "CREATE OR REPLACE VIEW v AS SELECT 1;\n")
    write(head / "schema", "V1__users.sql", "CREATE TABLE users (id INT);\r\n")  # CRLF only
    write(head / "schema", "V2__more.sql", "ALTER TABLE users ADD nick TEXT;\n")  # edited
    write(head / "schema", "R__views.sql", "CREATE OR REPLACE VIEW v AS SELECT 2;\n")
    write(
        head / "schema",
        "V3__cleanup.sql",
        "-- retire the legacy column (DROP TABLE in a comment is fine)\n"
        "ALTER TABLE users\n  DROP COLUMN name;\n"
        "INSERT INTO notes VALUES ('TRUNCATE me');\n"
        "DELIMITER //\nCREATE PROCEDURE p() BEGIN SELECT 1; END//\nDELIMITER ;\n",
    )
    result = diff_migrations(base, head)
    assert [(p.script, p.status) for p in result.pending] == [
        ("R__views.sql", "changed"),
        ("V2__more.sql", "changed"),
        ("V3__cleanup.sql", "new"),
    ]
    v3 = result.pending[2]
    assert [(s.number, s.line, s.first_line, s.destructive) for s in v3.statements] == [
        (1, 2, "ALTER TABLE users", ("DROP COLUMN",)),
        (2, 4, "INSERT INTO notes VALUES ('TRUNCATE me')", ()),
        (3, 6, "CREATE PROCEDURE p() BEGIN SELECT 1; END", ()),
    ]
    assert sorted((f.kind, f.subject) for f in result.flags) == [
        ("destructive-migration", "V3__cleanup.sql"),
        ("migration-edited", "V2__more.sql"),
    ]
    write(base / "schema", "V0__gone.sql", "SELECT 1;\n")
    write(head / "schema", "V1_5__late.sql", "SELECT 1;\n")
    result = diff_migrations(base, head)
    assert result.removed == ["V0__gone.sql"]
    assert {"migration-removed", "migration-out-of-order"} <= {f.kind for f in result.flags}


def test_invalid_migration_names_are_flagged_not_fatal(tmp_path):
    write(tmp_path / "head" / "schema", "create_users.sql", "CREATE TABLE t (id INT);\n")
    result = diff_migrations(tmp_path / "base", tmp_path / "head")
    assert [f.kind for f in result.flags] == ["migrations-invalid"]
    assert "create_users.sql" in result.flags[0].message


def test_passwords_in_statement_first_lines_are_masked():
    assert mask_passwords("CREATE USER 'app'@'%' IDENTIFIED BY 's3cr3t';") == (
        "CREATE USER 'app'@'%' IDENTIFIED BY '[secret]';"
    )
    assert "hunter2" not in mask_passwords("SET PASSWORD FOR x = PASSWORD('hunter2')")
    assert "hunter2" not in mask_passwords(
        "ALTER USER x IDENTIFIED WITH mysql_native_password BY 'hunter2'"
    )
