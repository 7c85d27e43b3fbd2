"""The in-VPC runner end to end, here: the archive as the program builds it, deployed to a local
stand-in for Lambda's Invoke API (standins/lambda_invoke.py) that runs its handler in a fresh
Python with only the unpacked archive and boto3 on its path, against the test MariaDB (TLS)
and moto; the dynamic providers invoke it through boto3, as `pulumi up` does.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3.session
import pymysql
import pytest
from infra_plans import plan_of
from migrator_support import write_migrations
from rotation_support import can_login, make_master, master_secret, value
from support_aws import create_secret, rds_secret

from infra.providers.migrations import SchemaMigrationsError, SchemaMigrationsProvider
from infra.providers.rotation import ApplicationUsersProvider, MasterPasswordRotationProvider
from migrator.discovery import load_migrations
from migrator.engine import MigrationOptions, Migrator
from migrator.history import TABLE
from rotation.grants import ROLE_PRIVILEGES
from standins import lambda_invoke
from standins.aws import FAKE_CREDENTIALS
from standins.mariadb import MariaDBServer
from vpcrunner.archive import RUNTIME, build_archive

ROOT = Path(__file__).resolve().parent.parent
FUNCTION = "appdb-test-db-runner"


# --- the archive ---------------------------------------------------------------------------


def test_the_archive_is_deterministic_and_is_what_the_program_deploys(tmp_path: Path) -> None:
    first = build_archive(ROOT, tmp_path / "a")
    second = build_archive(ROOT, tmp_path / "b")
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()
    assert {"vpcrunner/handler.py", "migrator/engine.py", "rotation/master.py"} <= set(first.files)
    assert "pymysql/__init__.py" in first.files and "certs/rds-global-bundle.pem" in first.files
    assert {f"schema/{s}" for s in load_migrations(ROOT / "schema").checksums()} <= set(first.files)
    assert not [f for f in first.files if "__pycache__" in f or f.endswith(".pyc")]
    assert not [f for f in first.files if f.split("/")[0] in ("boto3", "botocore", "pulumi")]
    # The program's function carries exactly this archive (same bytes, same hash).
    for stack in ("staging", "production"):
        function = plan_of(stack).of_type("aws:lambda/function:Function")[0]
        assert function.inputs["code"]["path"] == f"build/{first.path.name}"
        assert function.inputs["sourceCodeHash"] == first.code_sha256


# --- fixtures: a deployed function ---------------------------------------------------------


def project_with(base: Path, migrations: dict[str, str]) -> Path:
    """A project tree with the real packages and CA bundle and these migrations."""
    project = base / "project"
    project.mkdir(parents=True, exist_ok=True)
    for name in ("vpcrunner", "migrator", "rotation", "certs"):
        if not (project / name).exists():
            (project / name).symlink_to(ROOT / name)
    write_migrations(project / "schema", migrations)
    return project


def function_environment() -> dict[str, str]:
    """What the function sees: credentials of its role and, for Secrets Manager, the endpoint
    (moto stands in for the interface endpoint that private DNS resolves to)."""
    return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"]}


@pytest.fixture
def standin(aws: str) -> Iterator[lambda_invoke.LambdaStandIn]:
    with lambda_invoke.serving() as running:
        yield running


def deploy(
    standin: lambda_invoke.LambdaStandIn, project: Path, timeout: float = 60
) -> lambda_invoke.LambdaStandIn:
    archive = build_archive(project, project / "build")  # where the program builds it
    standin.deploy(FUNCTION, archive.path, timeout=timeout, environment=function_environment())
    return standin


def migration_props(
    mariadb: MariaDBServer, database: str, secret_arn: str, location: str, **overrides: Any
) -> dict[str, Any]:
    project_location = Path(location) if Path(location).is_absolute() else ROOT / location
    checked = SchemaMigrationsProvider().check(
        {},
        {
            "secret_arn": secret_arn,
            "region": "us-east-1",
            "host": mariadb.host,
            "port": mariadb.port,
            "database": database,
            "location": "schema",
            "migrations": load_migrations(project_location).checksums(),
            "ca_bundle": str(mariadb.ca_path),
            "connect_deadline_seconds": 5,
            "lock_wait_seconds": 5,
            "runner": FUNCTION,
            "runner_deadline_seconds": 120,
            **overrides,
        },
    )
    assert not checked.failures
    return checked.inputs


def history(mariadb: MariaDBServer, database: str) -> list[tuple]:
    with mariadb.root_connection(database) as conn, conn.cursor() as cur:
        try:
            cur.execute(
                f"SELECT script, state, statements_done, statements_total FROM `{TABLE}` "
                "ORDER BY installed_rank"
            )
        except pymysql.err.ProgrammingError:
            return []  # no history table: nothing ever ran
        return list(cur.fetchall())


def all_traffic(standin: lambda_invoke.LambdaStandIn) -> str:
    """Every event, answer and log line the function saw or produced."""
    return "\n".join(
        f"{i.event.decode()}\n{i.answer.decode()}\n{i.log}" for i in standin.invocations
    )


@pytest.fixture
def secret_arn(aws: str, mariadb: MariaDBServer, database: str) -> str:
    value_ = rds_secret(mariadb, mariadb.admin_user, mariadb.admin_password, database)
    return create_secret(value_)


# --- migrations through the function -------------------------------------------------------


def test_fresh_apply_then_a_no_op_rerun_through_the_function(
    standin, mariadb, database, secret_arn, capfd
):
    deploy(standin, ROOT)  # the project's own archive: schema/ as it is
    provider = SchemaMigrationsProvider()
    props = migration_props(mariadb, database, secret_arn, "schema")
    created = provider.create(props)
    assert created.outs is not None
    assert created.outs["applied"] == load_migrations(ROOT / "schema").checksums()
    assert [row[1] for row in history(mariadb, database)] == ["success"] * 3
    assert len(standin.invocations) == 1
    printed = capfd.readouterr().err
    assert "schema migrations: applied V1__create_users.sql" in printed
    # The next `pulumi up`: diff finds nothing; a forced update applies nothing.
    assert provider.diff(created.id, created.outs, props).changes is False
    updated = provider.update(created.id, created.outs, props)
    assert updated.outs is not None and updated.outs["applied"] == created.outs["applied"]
    assert len(history(mariadb, database)) == 3
    # Refresh reads history through the function too.
    refreshed = provider.read(created.id, created.outs)
    assert refreshed.outs is not None and refreshed.outs["applied"] == created.outs["applied"]
    assert mariadb.admin_password not in all_traffic(standin)
    events = [json.loads(i.event) for i in standin.invocations]
    assert [e["task"] for e in events] == ["migrate", "migrate", "migrations.read"]
    assert not [k for e in events for k in e["request"] if "password" in k]
    # It ran under the Python of the function's runtime (python3.13, not the suite's 3.11)
    # wherever this machine has one; elsewhere under this Python, as the stand-in said.
    ran = {".".join(i.python.split(".")[:2]) for i in standin.invocations}
    if lambda_invoke.runtime_python(RUNTIME):
        assert ran == {RUNTIME.removeprefix("python")}
    else:
        assert ran == {f"{sys.version_info[0]}.{sys.version_info[1]}"}


def test_the_stand_in_finds_a_python_by_the_runtimes_version(monkeypatch, tmp_path):
    this = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    monkeypatch.setenv("APPDB_LAMBDA_PYTHON", sys.executable)
    assert lambda_invoke.runtime_python(this) == sys.executable
    # A Python of another version is not taken for the runtime's, wherever it comes from.
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    assert lambda_invoke.runtime_python("python3.99") is None


def test_a_failing_statement_is_one_message_and_the_fixed_file_resumes(
    standin, mariadb, database, secret_arn, tmp_path
):
    broken = "CREATE TABLE seeds (name VARCHAR(20));\nINSERT INTO no_such_table VALUES (1);\n"
    project = project_with(tmp_path, {"V1__seeds.sql": broken})
    deploy(standin, project)
    props = migration_props(mariadb, database, secret_arn, str(project / "schema"))
    with pytest.raises(SchemaMigrationsError) as failure:
        SchemaMigrationsProvider().create(props)
    message = str(failure.value)
    assert "V1__seeds.sql: statement 2 (line 2) failed: server error 1146" in message
    assert failure.value.__cause__ is None and mariadb.admin_password not in message
    fixed = broken.replace("no_such_table VALUES (1)", "seeds VALUES ('one')")
    project = project_with(tmp_path, {"V1__seeds.sql": fixed})
    deploy(standin, project)  # the next `pulumi up` deploys the fixed file, then migrates
    props = migration_props(mariadb, database, secret_arn, str(project / "schema"))
    SchemaMigrationsProvider().create(props)
    assert history(mariadb, database) == [("V1__seeds.sql", "success", 2, 2)]
    with mariadb.root_connection(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM seeds")
        assert cur.fetchall() == (("one",),)


def test_files_that_differ_from_the_plan_are_refused_by_the_function(
    standin, mariadb, database, secret_arn, tmp_path
):
    project = project_with(tmp_path, {"V1__a.sql": "CREATE TABLE a (id INT);\n"})
    deploy(standin, project)
    props = migration_props(
        mariadb, database, secret_arn, str(project / "schema"), migrations={"V1__a.sql": "0" * 64}
    )
    with pytest.raises(SchemaMigrationsError, match="differ from the migration map"):
        SchemaMigrationsProvider().create(props)
    assert history(mariadb, database) == []


# Nine statements, each its own packet (a custom delimiter ends a packet): 4 s of work.
SLOW = "DELIMITER //\n" + "DO SLEEP(0.5) //\n" * 8 + "CREATE TABLE slow_done (id INT) //\n"


def test_a_short_deadline_spreads_one_migration_over_several_invocations(
    standin, mariadb, database, secret_arn, tmp_path, capfd
):
    # Each statement of V2 is its own packet; a 5 s function stops starting packets after
    # 4 s (a fifth of its time before the end), so the next invocation carries on.
    project = project_with(
        tmp_path, {"V1__first.sql": "CREATE TABLE first (id INT);\n", "V2__slow.sql": SLOW}
    )
    deploy(standin, project, timeout=5)
    props = migration_props(mariadb, database, secret_arn, str(project / "schema"))
    created = SchemaMigrationsProvider().create(props)
    assert created.outs is not None and created.outs["applied_version"] == "2"
    answers = [json.loads(i.answer) for i in standin.invocations]
    stopped = [a for a in answers if a.get("status") == "stopped"]
    assert len(stopped) >= 1 and answers[-1]["status"] == "done"
    assert {a["progress"]["script"] for a in stopped} == {"V2__slow.sql"}
    # History exact: one row per migration, every statement done, nothing left in flight.
    assert history(mariadb, database) == [
        ("V1__first.sql", "success", 1, 1),
        ("V2__slow.sql", "success", 9, 9),
    ]
    printed = capfd.readouterr().err
    assert "stopped at its deadline, migration 2 of 2 (V2__slow.sql) at statement" in printed


def test_a_statement_running_when_lambda_ends_the_invocation_finishes_on_the_server(
    standin, mariadb, database, secret_arn, tmp_path, capfd
):
    # One packet, longer than the function may run: Lambda stops the invocation (the
    # stand-in kills it), the server finishes the packet, the next invocations wait for the
    # migration lock and find the migration done.
    slow = "CREATE TABLE before_sleep (id INT);\nDO SLEEP(5);\nCREATE TABLE after_sleep (id INT);\n"
    project = project_with(tmp_path, {"V1__long.sql": slow})
    deploy(standin, project, timeout=3)
    props = migration_props(mariadb, database, secret_arn, str(project / "schema"))
    created = SchemaMigrationsProvider().create(props)
    assert created.outs is not None and created.outs["applied"] == props["migrations"]
    assert standin.invocations[0].timed_out
    assert history(mariadb, database) == [("V1__long.sql", "success", 3, 3)]
    with mariadb.root_connection(database) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        assert {row[0] for row in cur.fetchall()} >= {"before_sleep", "after_sleep"}
    printed = capfd.readouterr().err
    assert "invocation 1 ended before answering (Lambda ended the invocation" in printed


def test_the_engine_stops_between_packets_at_stop_after_and_resumes(mariadb, database, tmp_path):
    """migrator.engine's `stop_after`, alone: each run sends one packet, history stays exact."""
    from migrator.connection import ConnectionSettings

    settings = ConnectionSettings(
        host=mariadb.host,
        port=mariadb.port,
        user=mariadb.admin_user,
        password=mariadb.admin_password,
        database=database,
        ca_bundle=str(mariadb.ca_path),
    )
    body = "DELIMITER //\n" + "".join(f"CREATE TABLE s{i} (id INT) //\n" for i in range(3))
    location = write_migrations(tmp_path / "schema", {"V1__steps.sql": body})
    migrations = load_migrations(location)
    stops = []
    for _ in range(5):
        result = Migrator(settings, migrations, MigrationOptions(stop_after=0.0)).migrate()
        if result.stopped is None:
            break
        stops.append(result.stopped.statement)
    assert stops == [2, 3]  # one packet per run, then done
    assert history(mariadb, database) == [("V1__steps.sql", "success", 3, 3)]


# --- rotation through the function ---------------------------------------------------------


@pytest.fixture
def accounts(mariadb: MariaDBServer, database: str, aws: str) -> dict[str, Any]:
    """A master-like account whose password is a canary, its secret, empty role secrets."""
    user, _ = make_master(mariadb)
    canary = "Canary-" + secrets.token_hex(12)
    with mariadb.root_connection() as conn, conn.cursor() as cur:
        cur.execute("ALTER USER %s@'%%' IDENTIFIED BY %s", (user, canary))
    with mariadb.connect(database=database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY)")
    return {
        "user": user,
        "canary": canary,
        "master": master_secret(mariadb, user, canary, database),
        "app": create_secret(),
        "readonly": create_secret(),
        "prefix": f"l{secrets.token_hex(3)}_",
    }


def master_props(mariadb: MariaDBServer, accounts: dict, rotation: str) -> dict[str, Any]:
    return (
        MasterPasswordRotationProvider()
        .check(
            {},
            {
                "secret_arn": accounts["master"],
                "region": "us-east-1",
                "host": mariadb.host,
                "port": mariadb.port,
                "rotation": rotation,
                "ca_bundle": str(mariadb.ca_path),
                "connect_deadline_seconds": 5,
                "test_deadline_seconds": 2,
                "runner": FUNCTION,
            },
        )
        .inputs
    )


def users_props(
    mariadb: MariaDBServer, accounts: dict, database: str, rotation: str
) -> dict[str, Any]:
    return (
        ApplicationUsersProvider()
        .check(
            {},
            {
                "master_secret_arn": accounts["master"],
                "region": "us-east-1",
                "schema": database,
                "rotation": rotation,
                "roles": {
                    role: {"secret_arn": accounts[role], "host": mariadb.host, "port": mariadb.port}
                    for role in ROLE_PRIVILEGES
                },
                "privileges": {role: list(p) for role, p in ROLE_PRIVILEGES.items()},
                "account_prefix": accounts["prefix"],
                "ca_bundle": str(mariadb.ca_path),
                "connect_deadline_seconds": 5,
                "test_deadline_seconds": 2,
                "runner": FUNCTION,
            },
        )
        .inputs
    )


def drop_accounts(mariadb: MariaDBServer, prefix: str) -> None:
    with mariadb.root_connection() as conn, conn.cursor() as cur:
        for role in ROLE_PRIVILEGES:
            for suffix in ("a", "b"):
                cur.execute(f"DROP USER IF EXISTS `{prefix}{role}_{suffix}`@'%'")


def test_master_rotation_and_application_users_through_the_function_leak_no_password(
    standin, mariadb, database, accounts, capfd
):
    deploy(standin, ROOT)
    master, users = MasterPasswordRotationProvider(), ApplicationUsersProvider()
    try:
        first = master_props(mariadb, accounts, "r1")
        master_outs = dict(master.create(first).outs or {})  # adopts: nothing rotated
        assert value(accounts["master"])["password"] == accounts["canary"]
        users_outs = dict(users.create(users_props(mariadb, accounts, database, "r1")).outs or {})
        second = master_props(mariadb, accounts, "r2")
        assert master.diff("m", master_outs, second).changes
        rotated = dict(master.update("m", master_outs, second).outs or {})
        new_master = value(accounts["master"])["password"]
        assert new_master != accounts["canary"] and len(new_master) == 32
        assert can_login(mariadb, accounts["user"], new_master)
        assert not can_login(mariadb, accounts["user"], accounts["canary"])
        assert rotated["previous_version_id"] == master_outs["version_id"]
        users_outs = dict(
            users.update("u", users_outs, users_props(mariadb, accounts, database, "r2")).outs or {}
        )
        prefix = accounts["prefix"]
        assert users_outs["active_users"] == {
            "app": f"{prefix}app_b",
            "readonly": f"{prefix}readonly_b",
        }
        app = value(accounts["app"])
        assert can_login(mariadb, app["username"], app["password"], database)
        # No password anywhere: events, answers, the function's log, what the provider
        # printed, and what Pulumi would store (outputs).
        passwords = [accounts["canary"], new_master, app["password"]]
        passwords += [value(accounts[r], "AWSPREVIOUS")["password"] for r in ROLE_PRIVILEGES]
        seen = "\n".join(
            [all_traffic(standin), capfd.readouterr().err, json.dumps([rotated, users_outs])]
        )
        assert [p for p in passwords if p in seen] == []
        assert {json.loads(i.event)["task"] for i in standin.invocations} == {
            "master.read",
            "master.rotate",
            "users.apply",
        }
    finally:
        drop_accounts(mariadb, accounts["prefix"])


def test_rotation_under_load_no_client_sees_a_failed_connection(
    standin, mariadb, database, accounts
):
    """20 application clients connect continuously with the app role's secret (re-reading it
    only after a refused login) while 3 rotations run through the function."""
    deploy(standin, ROOT)
    users = ApplicationUsersProvider()
    outs = dict(users.create(users_props(mariadb, accounts, database, "load-0")).outs or {})
    stop = threading.Event()
    made, failed, rereads = [0], [], [0]
    lock = threading.Lock()

    def client() -> None:
        # A session per client: boto3's default session is not thread-safe.
        manager = boto3.session.Session().client("secretsmanager", region_name="us-east-1")

        def current() -> dict[str, Any]:
            answer = manager.get_secret_value(SecretId=accounts["app"], VersionStage="AWSCURRENT")
            return json.loads(answer["SecretString"])

        credentials = current()
        while not stop.is_set():
            try:
                mariadb.connect(
                    database=database,
                    user=credentials["username"],
                    password=credentials["password"],
                    connect_timeout=5,
                ).close()
                with lock:
                    made[0] += 1
            except pymysql.err.OperationalError as exc:
                if exc.args[0] != 1045:
                    with lock:
                        failed.append(str(exc.args[0]))
                    continue
                with lock:
                    rereads[0] += 1
                fresh = current()
                if fresh == credentials:
                    with lock:
                        failed.append("refused with the current secret")
                credentials = fresh
            time.sleep(0.05)

    clients = [threading.Thread(target=client) for _ in range(20)]
    try:
        for thread in clients:
            thread.start()
        for number in range(1, 4):
            props = users_props(mariadb, accounts, database, f"load-{number}")
            outs = dict(users.update("u", outs, props).outs or {})
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
        drop_accounts(mariadb, accounts["prefix"])
    print(f"rotation under load: {made[0]} connections made, {len(failed)} failed, "
          f"{rereads[0]} secret re-reads, 3 rotations through the function")  # fmt: skip
    assert failed == []
    assert made[0] > 100
    assert len([i for i in standin.invocations if b"users.apply" in i.event]) == 4
