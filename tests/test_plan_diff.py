"""The offline plan diff (plandiff/, scripts/plan-diff).

Part 1 works on synthetic plans and migration folders (fast). Part 2 builds a small git
history from the project's real files in a temp dir and diffs real plans; the plans are
computed once per (revision, stack) in module-scoped fixtures and shared by the assertions.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from plandiff import (
    REPLACE_FORCING,
    PlanSnapshot,
    Resource,
    build_reports,
    destructive_operations,
    diff_migrations,
    diff_plans,
)
from plandiff.migrations import mask_passwords
from plandiff.render import StackReport, render_report
from plandiff.revisions import extract_revision, plan_all

INSTANCE = "aws:rds/instance:Instance"
PARAMS = "aws:rds/parameterGroup:ParameterGroup"


def resource(type_: str, name: str, component: str = "database", /, **inputs) -> Resource:
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
                "skipFinalSnapshot": True,
            },
        )
    )
    report = report_of(base, head)
    assert kinds(report) == [
        "backup-retention-lowered",
        "deletion-protection-off",
        "final-snapshot-off",
        "public-access-on",
        "risky-change",
    ]
    text = render_report([report], "b", "h")
    assert "backup retention lowered from 30 to 7 days" in text
    # raising retention, or turning protection on, is not flagged
    report = report_of(head, base)
    assert "backup-retention-lowered" not in kinds(report)
    assert "deletion-protection-off" not in kinds(report)


def test_removing_protect_from_the_database_is_flagged():
    protected = Resource(
        **{**vars(resource(INSTANCE, "primary", **PRIMARY)), "options": {"protect": True}}
    )
    unprotected = Resource(**{**vars(protected), "options": {"protect": False}})
    assert kinds(report_of(snapshot(protected), snapshot(unprotected))) == ["protect-off"]
    assert kinds(report_of(snapshot(unprotected), snapshot(protected))) == []


def test_a_replaced_subnet_group_is_flagged():
    def subnet_group(logical_name: str, **inputs) -> Resource:
        return resource("aws:rds/subnetGroup:SubnetGroup", logical_name, "network", **inputs)

    def flags_of(before: Resource, after: Resource) -> list[str]:
        return kinds(report_of(snapshot(before), snapshot(after)))

    original = subnet_group("db-subnets", name="a", subnetIds=["x"])
    assert flags_of(original, subnet_group("db-subnets", name="b", subnetIds=["x"])) == [
        "subnet-group-replaced"
    ]
    assert flags_of(original, subnet_group("db-subnets-2", name="a", subnetIds=["x"])) == [
        "subnet-group-replaced"
    ]
    assert flags_of(original, subnet_group("db-subnets", name="a", subnetIds=["x", "y"])) == []


def test_deleting_any_database_instance_is_flagged_a_replica_included():
    primary = resource(INSTANCE, "primary", **PRIMARY)
    replica = resource(INSTANCE, "replica-1", replicateSourceDb="appdb-production")
    report = report_of(snapshot(primary, replica), snapshot(primary))
    assert kinds(report) == ["deleted"]
    (flag,) = report.flags
    assert "read replica" in flag.message and "re-created from the primary" in flag.message
    assert kinds(report_of(snapshot(primary, replica), snapshot(replica))) == ["deleted"]


def test_turning_multi_az_off_is_flagged():
    base = snapshot(resource(INSTANCE, "primary", **PRIMARY, multiAz=True))
    head = snapshot(resource(INSTANCE, "primary", **PRIMARY, multiAz=False))
    report = report_of(base, head)
    assert kinds(report) == ["multi-az-off"]
    assert "standby" in report.flags[0].message
    assert kinds(report_of(head, base)) == []


@pytest.mark.parametrize(
    ("blue_green", "words"),
    [
        (True, ["Blue/Green", "switchover", "without a final snapshot"]),
        (False, ["in place", "downtime"]),
    ],
)
def test_a_major_upgrade_is_flagged_with_what_will_happen(blue_green, words):
    before = {**PRIMARY, "engineVersion": "8.0", "blueGreenUpdate": {"enabled": blue_green}}
    after = {**before, "engineVersion": "8.4"}
    report = report_of(
        snapshot(resource(INSTANCE, "primary", **before)),
        snapshot(resource(INSTANCE, "primary", **after)),
    )
    assert kinds(report) == ["major-upgrade"]
    message = report.flags[0].message
    assert "8.0 to 8.4" in message
    for word in words:
        assert word in message
    # a new minor is not a major upgrade, and none is flagged
    minor = {**before, "engineVersion": "8.0.44"}
    assert (
        kinds(
            report_of(
                snapshot(resource(INSTANCE, "primary", **{**before, "engineVersion": "8.0.43"})),
                snapshot(resource(INSTANCE, "primary", **minor)),
            )
        )
        == []
    )


def test_after_a_minor_upgrade_a_major_version_config_shows_no_engine_change():
    """What the provider records at refresh (its compareActualEngineVersion rule), replayed:
    with `8.4` configured the state keeps `8.4` when RDS runs 8.4.7, so the next plan has no
    engine change; with a full `8.4.3` configured the state takes 8.4.4 and the plan asks for
    a downgrade (the defect), which the plan diff flags."""
    from plandiff.rules import refreshed_engine_version

    def after_refresh(configured: str, actual: str) -> PlanSnapshot:
        recorded = refreshed_engine_version(configured, actual)
        return snapshot(resource(INSTANCE, "primary", **{**PRIMARY, "engineVersion": recorded}))

    def config(version: str) -> PlanSnapshot:
        return snapshot(resource(INSTANCE, "primary", **{**PRIMARY, "engineVersion": version}))

    report = report_of(after_refresh("8.4", "8.4.7"), config("8.4"))
    assert report.resources.changed == [] and not report.flags
    report = report_of(after_refresh("8.4.3", "8.4.4"), config("8.4.3"))
    (change,) = report.resources.changed
    assert [(c.path, c.before, c.after) for c in change.changes] == [
        ("engineVersion", "8.4.4", "8.4.3")
    ]
    assert kinds(report) == ["engine-downgrade"]
    # the rule itself, as the provider states it
    assert refreshed_engine_version("1.3", "1.3.27") == "1.3"
    assert refreshed_engine_version("8.4", "8.40.1") == "8.40.1"
    assert refreshed_engine_version("8.4.3", "8.4.4", pending="8.4.3") == "8.4.3"


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


def test_policy_documents_are_diffed_statement_by_statement():
    def key(actions):
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "Root", "Effect": "Allow", "Action": "kms:*"},
                {"Sid": "Rds", "Effect": "Allow", "Action": actions},
            ],
        }
        return resource("aws:kms/key:Key", "key", "encryption", policy=json.dumps(policy))

    report = report_of(snapshot(key(["kms:Decrypt"])), snapshot(key(["kms:Decrypt", "kms:*"])))
    (change,) = report.resources.changed
    assert [(c.path, c.before, c.after, c.replaces) for c in change.changes] == [
        ("policy(json).Statement[Rds].Action", ["kms:Decrypt"], ["kms:Decrypt", "kms:*"], False)
    ]


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


# --- part 2: a real git history, real plans -----------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
# pyproject.toml: scripts/<name> runs the command it declares (scripts/_command.py).
PROJECT_FILES = [
    "Pulumi.yaml", "Pulumi.staging.yaml", "Pulumi.production.yaml", "__main__.py", "pyproject.toml",
]  # fmt: skip
PROJECT_DIRS = ["infra", "planner", "migrator", "rotation", "vpcrunner", "schema", "certs"]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "plan-diff test",
    "GIT_AUTHOR_EMAIL": "plan-diff@example.invalid",
    "GIT_COMMITTER_NAME": "plan-diff test",
    "GIT_COMMITTER_EMAIL": "plan-diff@example.invalid",
}


def run_git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
    )
    return result.stdout.strip()


def project_repository(repo: Path, dirs: list[str]) -> str:
    """A git repository at `repo` holding the project's files and `dirs`; its one commit."""
    repo.mkdir()
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, repo / name)
    for name in dirs:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", "base")
    return run_git(repo, "rev-parse", "HEAD")


def edit_stack_config(repo: Path, stack: str, **changes) -> None:
    path = repo / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        document["config"][f"appdb:{key}"] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path} no longer contains {old!r}: update this test"
    path.write_text(text.replace(old, new))


def next_migration_version(repo: Path) -> int:
    versions = [
        int(m.group(1))
        for p in (repo / "schema").glob("V*__*.sql")
        if (m := re.match(r"V(\d+)", p.name))
    ]
    return max(versions, default=0) + 1


def add_replica(repo: Path) -> None:
    current = yaml.safe_load((repo / "Pulumi.production.yaml").read_text())["config"]
    edit_stack_config(repo, "production", readReplicaCount=current["appdb:readReplicaCount"] + 1)


def change_parameter(repo: Path) -> None:
    current = yaml.safe_load((repo / "Pulumi.production.yaml").read_text())["config"]
    parameters = dict(current.get("appdb:dbParameters") or {})
    parameters["long_query_time"] = "1"  # the project default is 2
    edit_stack_config(repo, "production", dbParameters=parameters)


def add_migration(repo: Path) -> None:
    version = next_migration_version(repo)
    (repo / "schema" / f"V{version}__create_orders.sql").write_text(
        "-- orders placed by users\n"
        "CREATE TABLE orders (\n"
        "  id BIGINT AUTO_INCREMENT PRIMARY KEY,\n"
        "  user_id BIGINT NOT NULL\n"
        ");\n"
        "CREATE INDEX idx_orders_user_id ON orders (user_id);\n"
    )


def bump_rotation(repo: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "set-rotation"),
            "--value",
            "2026-11",
            str(repo / "Pulumi.production.yaml"),
        ],
        check=True,
        capture_output=True,
    )


def turn_encryption_off(repo: Path) -> None:
    replace_in(repo / "infra" / "database.py", "storage_encrypted=True", "storage_encrypted=False")


def start_on_80(repo: Path) -> None:
    """The base of the upgrade variant: production still on MySQL 8.0."""
    edit_stack_config(repo, "production", engineVersion="8.0")


def upgrade_replicas_to_84(repo: Path) -> None:
    edit_stack_config(repo, "production", replicaEngineVersion="8.4")


def upgrade_primary_to_84(repo: Path) -> None:
    path = repo / "Pulumi.production.yaml"
    document = yaml.safe_load(path.read_text())
    for key in ("appdb:engineVersion", "appdb:replicaEngineVersion"):
        document["config"].pop(key, None)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def remove_replicas_and_multi_az(repo: Path) -> None:
    edit_stack_config(repo, "production", readReplicaCount=0, multiAz=False)


# Each variant is a branch from the base with one commit per edit. The three routine changes
# share one branch (and so one plan): their effects are disjoint and asserted one by one.
VARIANTS = {
    "routine": [add_replica, change_parameter, add_migration],
    "rotation": [bump_rotation],
    "encryption": [turn_encryption_off],
    "shrink": [remove_replicas_and_multi_az],
}
# The 8.0 -> 8.4 upgrade of production, each step planned against the step before it.
UPGRADE_STEPS = {
    "on80": [start_on_80],
    "replicas84": [start_on_80, upgrade_replicas_to_84],
    "primary84": [start_on_80, upgrade_replicas_to_84, upgrade_primary_to_84],
}


@dataclass
class History:
    repo: Path
    base: str
    commits: dict[str, str]
    reports: dict[str, StackReport]  # production report of each variant against the base
    unchanged: StackReport  # production, base against itself
    upgrade: dict[str, StackReport]  # each step of the 8.0 -> 8.4 upgrade against the step before


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> History:
    """base commit + one commit per variant (each on its own branch from base); every plan is
    computed once, in parallel."""
    work = tmp_path_factory.mktemp("plan-diff")
    repo = work / "repo"
    base = project_repository(repo, PROJECT_DIRS)

    def branch(name: str, edits) -> str:
        run_git(repo, "checkout", "-q", "-b", name, base)
        for edit in edits:
            edit(repo)
            run_git(repo, "add", "-A")
            run_git(repo, "commit", "-q", "-m", edit.__name__)
        return run_git(repo, "rev-parse", "HEAD")

    commits = {name: branch(name, edits) for name, edits in VARIANTS.items()}
    step_commits = {name: branch(name, edits) for name, edits in UPGRADE_STEPS.items()}
    run_git(repo, "checkout", "-q", "main")

    dirs = {"base": extract_revision(repo, base, work / "base")}
    for name, commit in {**commits, **step_commits}.items():
        dirs[name] = extract_revision(repo, commit, work / name)
    plans = plan_all([(directory, "production", name) for name, directory in dirs.items()])
    base_plans = {"production": plans[(dirs["base"], "production")]}

    def report(name: str) -> StackReport:
        head_plans = {"production": plans[(dirs[name], "production")]}
        (result,) = build_reports(dirs["base"], dirs[name], base_plans, head_plans, ["production"])
        return result

    def step(before: str, after: str) -> StackReport:
        plan_of = {"production": plans[(dirs[before], "production")]}
        plan_to = {"production": plans[(dirs[after], "production")]}
        (result,) = build_reports(dirs[before], dirs[after], plan_of, plan_to, ["production"])
        return result

    steps = list(UPGRADE_STEPS)
    upgrade = {after: step(before, after) for before, after in itertools.pairwise(steps)}
    return History(
        repo, base, commits, {name: report(name) for name in commits}, report("base"), upgrade
    )


# Top-level components (__main__.py) that hold credentials: a rotation touches nothing else.
CREDENTIAL_COMPONENTS = {"credentials", "master-rotation", "application-users"}


def names(resources) -> list[str]:
    return sorted(r.name for r in resources)


def changed(report: StackReport) -> dict[str, list[str]]:
    return {c.resource.name: [p.path for p in c.changes] for c in report.resources.changed}


def test_history_unchanged_tree_gives_an_empty_report(history):
    report = history.unchanged
    assert report.is_empty and not report.flags
    assert "No infrastructure or schema changes." in render_report([report], "b", "h")


def test_history_one_more_production_replica(history):
    report = history.reports["routine"]
    added = report.resources.added
    instances = [r for r in added if r.type == INSTANCE]
    assert len(instances) == 1 and instances[0].name.endswith("replica-3")
    assert instances[0].inputs.get("replicateSourceDb")
    # everything added belongs to the new replica (its log groups)
    assert all("replica-3" in r.name for r in added), names(added)
    assert not report.resources.removed
    assert "appdb:readReplicaCount" in [c.path for c in report.resources.config]


def test_history_parameter_group_value_changed(history):
    report = history.reports["routine"]
    # the primary's and the replicas' groups carry the same parameters
    changes = [c for c in report.resources.changed if c.resource.type == PARAMS]
    assert sorted(c.resource.name for c in changes) == [
        "database-params",
        "database-replica-params",
    ]
    params = changes[0]
    (change,) = params.changes
    assert (change.path, change.before, change.after, change.replaces) == (
        "parameters[long_query_time].value",
        "2",
        "1",
        False,
    )
    text = render_report([report], "b", "h")
    assert '| `parameters[long_query_time].value` | `"2"` | `"1"` |' in text


def test_history_new_migration_is_pending(history):
    report = history.reports["routine"]
    (pending,) = report.migrations.pending
    assert pending.script.endswith("__create_orders.sql") and pending.status == "new"
    assert [(s.line, s.first_line) for s in pending.statements] == [
        (2, "CREATE TABLE orders ("),
        (6, "CREATE INDEX idx_orders_user_id ON orders (user_id)"),
    ]
    text = render_report([report], "b", "h")
    assert f"- `{pending.script}` (new)" in text
    assert "1. line 2: `CREATE TABLE orders (`" in text


def test_history_routine_changes_touch_nothing_else(history):
    report = history.reports["routine"]
    (pending,) = report.migrations.pending
    for change in report.resources.changed:
        if change.resource.type == PARAMS:
            continue
        if change.resource.component == "monitoring":
            # the new replica joins the dashboard and the instances' event subscription
            assert change.resource.name in {"monitoring-dashboard", "monitoring-events-instances"}
            continue
        if change.resource.type == "aws:lambda/function:Function":
            # the runner function's archive carries schema/: new code, new hash
            assert {p.path for p in change.changes} == {"code.path", "sourceCodeHash"}
            continue
        # the migrations resource: its script -> checksum map gains the new script, and it
        # waits for the new replica too
        paths = [p.path for p in change.changes if p.path != "options.depends_on"]
        assert all(pending.script in path for path in paths), changed(report)
    assert [c.path for c in report.resources.config] == [
        "appdb:dbParameters",
        "appdb:readReplicaCount",
    ]
    assert not report.flags
    assert "No flagged changes." in render_report([report], "b", "h")


def test_history_rotation_changes_only_credential_resources(history):
    report = history.reports["rotation"]
    assert report.resources.changed, "a new rotation value must change something"
    for change in report.resources.changed:
        assert change.resource.component in CREDENTIAL_COMPONENTS, changed(report)
    assert INSTANCE not in {c.resource.type for c in report.resources.changed}
    assert not report.resources.added and not report.resources.removed
    assert not report.flags
    assert [c.path for c in report.resources.config] == ["appdb:credentialsRotation"]
    text = render_report([report], "b", "h")
    for change in report.resources.changed:
        assert f"`{change.resource.name}`" in text


def test_history_encryption_off_is_flagged(history):
    report = history.reports["encryption"]
    kinds_found = {f.kind for f in report.flags}
    assert {"replacement", "encryption-off"} <= kinds_found
    primary = next(c for c in report.resources.changed if c.resource.name.endswith("primary"))
    assert primary.replaces
    assert [(c.path, c.before, c.after) for c in primary.changes if c.replaces] == [
        ("storageEncrypted", True, False)
    ]
    text = render_report([report], "b", "h")
    assert "🚩" in text and "is REPLACED" in text


def test_history_removing_replicas_and_multi_az_is_flagged(history):
    """Today's "0 to add, 10 to remove", exit 0: now every removed instance and the lost
    standby are flagged."""
    report = history.reports["shrink"]
    removed = [r.name for r in report.resources.removed if r.type == INSTANCE]
    assert len(removed) == 2
    deleted = sorted(f.subject for f in report.flags if f.kind == "deleted")
    assert deleted == sorted(removed)
    assert "multi-az-off" in {f.kind for f in report.flags}
    text = render_report([report], "b", "h")
    assert "No flagged changes." not in text


def test_history_the_80_to_84_upgrade_plans_replicas_first_then_the_primary(history):
    replicas_step = history.upgrade["replicas84"]
    upgraded = {f.subject for f in replicas_step.flags if f.kind == "major-upgrade"}
    assert upgraded == {"database-replica-1", "database-replica-2"}
    instances = {
        c.resource.name: c for c in replicas_step.resources.changed if c.resource.type == INSTANCE
    }
    assert set(instances) == upgraded  # the primary is untouched in step 1
    assert not any(c.replaces for c in instances.values())
    # the replicas' groups are replaced by 8.4 ones; the primary's groups stay
    replaced_groups = {c.resource.name for c in replicas_step.resources.changed if c.replaces}
    assert replaced_groups == {"database-replica-params", "database-replica-options"}
    primary_step = history.upgrade["primary84"]
    (flag,) = [f for f in primary_step.flags if f.kind == "major-upgrade"]
    assert flag.subject == "database-primary"
    assert "in place" in flag.message and "downtime" in flag.message
    assert not [f for f in primary_step.flags if f.kind == "replacement"]


def test_cli_exit_codes_and_output_file(history, tmp_path):
    """End to end through scripts/plan-diff with the working tree as head."""
    script = [
        sys.executable,
        str(ROOT / "scripts" / "plan-diff"),
        "--project-dir",
        str(history.repo),
    ]
    clean = subprocess.run(
        [*script, "--base", "main", "--stack", "staging"], capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stderr
    assert "No infrastructure or schema changes." in clean.stdout
    assert "## `staging`: no changes" in clean.stdout

    turn_encryption_off(history.repo)  # uncommitted: the working tree is the head
    try:
        output = tmp_path / "report.md"
        flagged = subprocess.run(
            [*script, "--base", history.base, "--stack", "production", "--output", str(output)],
            capture_output=True,
            text=True,
        )
    finally:
        run_git(history.repo, "checkout", "--", "infra/database.py")
    assert flagged.returncode == 2, flagged.stderr
    assert flagged.stdout == ""
    report = output.read_text()
    assert "encryption-off" in report and "working tree" in report

    bad = subprocess.run([*script, "--base", "no-such-revision"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "unknown revision 'no-such-revision'" in bad.stderr


@pytest.mark.parametrize(
    "stacks", [["stagin"], ["staging", "prodution"]], ids=["one typo", "a typo among valid"]
)
def test_cli_refuses_unknown_stacks_before_planning_anything(stacks: list[str]) -> None:
    """A misspelled --stack used to be planned as an empty stack on both sides: 'no changes'."""
    arguments = [item for stack in stacks for item in ("--stack", stack)]
    completed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plan-diff"), "--base", "HEAD", *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1, completed.stdout
    assert completed.stdout == ""
    typo = stacks[-1]
    assert f"unknown stack '{typo}'" in completed.stderr
    assert "known stacks: production, staging" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_every_flag_the_plan_diff_raises_is_explained_in_the_pipeline_docs():
    # Reviewers meet a flag by its name in the report; docs/pipeline.md's table says what it
    # means and what to check. A flag added to plandiff/ without a row there is unexplained.
    root = Path(__file__).resolve().parent.parent
    raised = {
        kind
        for source in (root / "plandiff").glob("*.py")
        for kind in re.findall(r'Flag\(\s*"([a-z-]+)"', source.read_text(encoding="utf-8"))
    }
    documented = set(
        re.findall(r"^\| `([a-z-]+)` \|", (root / "docs/pipeline.md").read_text(), re.MULTILINE)
    )
    assert len(raised) >= 15, raised  # fewer means the pattern no longer finds them
    assert sorted(raised - documented) == []
