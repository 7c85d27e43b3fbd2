"""The SchemaMigrations dynamic provider against the real engine, a real MariaDB and moto.

The provider's methods are called the way Pulumi's provider host calls them (plain dicts in,
Create/Update/ReadResult out), and the provider is serialised exactly as the SDK does it and
loaded in a fresh interpreter, as the provider host does.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from infra_plans import stack_plans
from migrator_support import tables, write_migrations
from pulumi.dynamic.dynamic import serialize_provider
from support_aws import (
    ROOT,
    create_secret,
    grpc_struct,
    provider_host,
    put_secret,
    rds_secret,
    run_in_fresh_interpreter,
)

from infra.providers.migrations import (
    SchemaMigrationsError,
    SchemaMigrationsProvider,
    compare,
)
from migrator import history
from migrator import secrets as migrator_secrets
from migrator.discovery import load_migrations
from standins.mariadb import MariaDBServer
from vpcrunner.requests import UNKNOWN

V1 = """CREATE TABLE widgets (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(100) NOT NULL
);
CREATE INDEX idx_widgets_name ON widgets(name);
"""
V2 = "ALTER TABLE widgets ADD COLUMN colour VARCHAR(20);\n"
V3 = "INSERT INTO widgets (name, colour) VALUES ('first', 'red');\n"


# --- helpers -------------------------------------------------------------------------------


def admin_secret(mariadb: MariaDBServer, database: str, password: str | None = None) -> dict:
    """The admin's credentials in the standard RDS JSON shape, as the stack would store them
    (optionally with another password)."""
    return rds_secret(
        mariadb,
        mariadb.admin_user,
        mariadb.admin_password if password is None else password,
        database,
    )


def make_props(
    mariadb: MariaDBServer, database: str, secret_arn: str, location: Path, **overrides: Any
) -> dict[str, Any]:
    """The inputs after `check`, as Pulumi hands them to create/update."""
    props = (
        SchemaMigrationsProvider()
        .check(
            {},
            {
                "secret_arn": secret_arn,
                "region": "us-east-1",
                "host": mariadb.host,
                "port": mariadb.port,
                "database": database,
                "location": str(location),
                "migrations": load_migrations(location).checksums(),
                "ca_bundle": str(mariadb.ca_path),
                "connect_deadline_seconds": 3,
                "lock_wait_seconds": 10,
            },
        )
        .inputs
    )
    props.update(overrides)
    return props


def expect_readable_error(
    action: Callable[[], object], *fragments: str, forbidden: tuple[str, ...] = ()
) -> str:
    with pytest.raises(SchemaMigrationsError) as caught:
        action()
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    for secret in forbidden:
        assert secret not in message, "a secret leaked into the error message"
    # One message: no chained traceback carrying an inner exception's text.
    assert caught.value.__suppress_context__ and caught.value.__cause__ is None
    return message


@pytest.fixture
def location(tmp_path: Path) -> Path:
    return write_migrations(tmp_path / "schema", {"V1__widgets.sql": V1, "V2__colour.sql": V2})


@pytest.fixture
def secret_arn(aws: str, mariadb: MariaDBServer, database: str) -> str:
    return create_secret(admin_secret(mariadb, database))


# --- preview: check and diff, no database -----------------------------------------------------


def test_diff_lists_pending_changed_and_missing_scripts_without_a_database() -> None:
    applied = {"V1__a.sql": "c1", "V2__b.sql": "c2", "R__views.sql": "r1"}
    olds = {"host": "db", "port": 3306, "database": "app", "applied": applied}
    news = {
        "host": "db",
        "port": 3306.0,  # numbers come back from Pulumi's wire format as floats
        "database": "app",
        "migrations": {"V1__a.sql": "c1", "V3__c.sql": "c3", "R__views.sql": "r2"},
    }
    found = compare(olds, news)
    assert found.pending == ["V3__c.sql"]
    assert found.changed == ["R__views.sql"]
    assert found.missing == ["V2__b.sql"]
    assert found.settings == []
    result = SchemaMigrationsProvider().diff("id", olds, news)
    assert result.changes is True
    assert result.replaces == []


def test_diff_reports_nothing_when_everything_is_applied() -> None:
    applied = {"V1__a.sql": "c1", "V2__b.sql": "c2"}
    olds = {"host": "db", "port": 3306, "database": "app", "applied": applied}
    news = {"host": "db", "port": 3306, "database": "app", "migrations": dict(applied)}
    assert not compare(olds, news).has_changes
    assert SchemaMigrationsProvider().diff("id", olds, news).changes is False


def test_diff_treats_a_new_endpoint_or_unknown_values_as_a_change() -> None:
    applied = {"V1__a.sql": "c1"}
    olds = {"host": "old-db", "port": 3306, "database": "app", "applied": applied}
    news = {"host": "new-db", "port": 3306, "database": "app", "migrations": dict(applied)}
    assert compare(olds, news).settings == ["host"]
    news_unknown = {**news, "host": UNKNOWN}
    assert SchemaMigrationsProvider().diff("id", olds, news_unknown).changes is True


def test_check_rejects_password_inputs_and_bad_values() -> None:
    result = SchemaMigrationsProvider().check(
        {},
        {
            "secret_arn": "arn:aws:secretsmanager:us-east-1:1:secret:x",
            "region": "us-east-1",
            "host": UNKNOWN,  # unknown during preview: not an error
            "port": 70000,
            "database": "",
            "location": "schema",
            "migrations": {"V1__a.sql": 5},
            "master_password": "hunter2",
            "ca_bundle": "certs/no-such-bundle.pem",
        },
    )
    reasons = {failure.property: failure.reason for failure in result.failures}
    assert set(reasons) == {"port", "database", "migrations", "master_password", "ca_bundle"}
    assert "certs/no-such-bundle.pem" in reasons["ca_bundle"]
    assert "70000" in reasons["port"]
    assert "hunter2" not in json.dumps(reasons)


# --- create / update / read / delete against MariaDB + moto ----------------------------------


def test_create_applies_everything_and_keeps_no_password(
    mariadb: MariaDBServer, database: str, secret_arn: str, location: Path
) -> None:
    props = make_props(mariadb, database, secret_arn, location)
    result = SchemaMigrationsProvider().create(props)

    assert result.outs is not None
    assert result.outs["applied"] == load_migrations(location).checksums()
    assert result.outs["applied_version"] == "2"
    assert result.outs["secret_arn"] == secret_arn  # inputs echoed into outputs
    assert "widgets" in tables(mariadb, database)
    assert mariadb.admin_password not in json.dumps(result.outs)
    assert mariadb.admin_password not in json.dumps(props)
    # Immediately after, the diff has nothing to do.
    assert SchemaMigrationsProvider().diff(result.id, result.outs, props).changes is False


def test_new_file_shows_in_diff_and_update_applies_it(
    mariadb: MariaDBServer, database: str, secret_arn: str, location: Path
) -> None:
    provider = SchemaMigrationsProvider()
    created = provider.create(make_props(mariadb, database, secret_arn, location))
    assert created.outs is not None

    write_migrations(location, {"V3__first_widget.sql": V3})
    news = make_props(mariadb, database, secret_arn, location)
    assert compare(created.outs, news).pending == ["V3__first_widget.sql"]
    assert provider.diff(created.id, created.outs, news).changes is True

    updated = provider.update(created.id, created.outs, news)
    assert updated.outs is not None
    assert set(updated.outs["applied"]) == {
        "V1__widgets.sql",
        "V2__colour.sql",
        "V3__first_widget.sql",
    }
    assert updated.outs["applied_version"] == "3"
    with mariadb.root_connection(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, colour FROM widgets")
        assert cur.fetchall() == (("first", "red"),)
    assert provider.diff(created.id, updated.outs, news).changes is False


def test_read_shows_drift_in_the_history_table(
    mariadb: MariaDBServer, database: str, secret_arn: str, location: Path
) -> None:
    provider = SchemaMigrationsProvider()
    props = make_props(mariadb, database, secret_arn, location)
    created = provider.create(props)
    assert created.outs is not None

    # Someone edits the history by hand: V2's recorded checksum changes, V1's row goes.
    with mariadb.root_connection(database) as conn, conn.cursor() as cur:
        table = history.TABLE
        edited = cur.execute(
            f"UPDATE `{table}` SET checksum = 'edited-by-hand' WHERE script = %s",
            ("V2__colour.sql",),
        )
        deleted = cur.execute(f"DELETE FROM `{table}` WHERE script = %s", ("V1__widgets.sql",))
        assert (edited, deleted) == (1, 1)

    refreshed = provider.read(created.id, created.outs)
    assert refreshed.outs is not None
    assert refreshed.outs["applied"] == {"V2__colour.sql": "edited-by-hand"}
    assert refreshed.outs["applied_version"] == "2"
    drift = compare(refreshed.outs, props)
    assert (drift.pending, drift.changed, drift.missing) == (
        ["V1__widgets.sql"],
        ["V2__colour.sql"],
        [],
    )
    assert provider.diff(created.id, refreshed.outs, props).changes is True
    # The refreshed inputs hold the database's map, so the preview displays V1 and V2.
    assert refreshed.inputs is not None
    assert refreshed.inputs["migrations"] == refreshed.outs["applied"]
    assert refreshed.inputs["migrations"] != props["migrations"]


def test_delete_leaves_the_schema_in_place(
    mariadb: MariaDBServer, database: str, secret_arn: str, location: Path
) -> None:
    provider = SchemaMigrationsProvider()
    created = provider.create(make_props(mariadb, database, secret_arn, location))
    assert created.outs is not None
    before = tables(mariadb, database)
    provider.delete(created.id, created.outs)
    assert tables(mariadb, database) == before
    assert "widgets" in before


def test_files_changed_after_planning_are_refused(
    mariadb: MariaDBServer, database: str, secret_arn: str, location: Path
) -> None:
    props = make_props(mariadb, database, secret_arn, location)
    (location / "V2__colour.sql").write_text(V2 + "-- edited after the preview\n")
    expect_readable_error(
        lambda: SchemaMigrationsProvider().create(props), "V2__colour.sql", "differ"
    )
    assert "widgets" not in tables(mariadb, database)


def test_snapshot_is_taken_before_applying_and_only_when_something_is_pending(
    mariadb: MariaDBServer, database: str, secret_arn: str, location: Path
) -> None:
    rds = boto3.client("rds", region_name="us-east-1")
    instance = f"appdb-test-{secrets.token_hex(3)}"
    rds.create_db_instance(
        DBInstanceIdentifier=instance,
        Engine="mysql",
        DBInstanceClass="db.t4g.micro",
        MasterUsername="admin",
        MasterUserPassword="not-used-here-123",
        AllocatedStorage=20,
    )

    def snapshots() -> list[str]:
        found = rds.describe_db_snapshots(DBInstanceIdentifier=instance, SnapshotType="manual")[
            "DBSnapshots"
        ]
        return sorted(s["DBSnapshotIdentifier"] for s in found)

    provider = SchemaMigrationsProvider()
    props = make_props(
        mariadb,
        database,
        secret_arn,
        location,
        snapshot_before_migrate=True,
        instance_identifier=instance,
    )
    created = provider.create(props)
    assert created.outs is not None
    (first,) = snapshots()
    assert first.startswith(f"{instance}-pre-v2-")  # named after the target version

    provider.update(created.id, created.outs, props)  # nothing pending: no snapshot
    assert snapshots() == [first]


def test_snapshot_without_an_instance_identifier_is_refused(
    mariadb: MariaDBServer, database: str, secret_arn: str, location: Path
) -> None:
    props = make_props(mariadb, database, secret_arn, location, snapshot_before_migrate=True)
    expect_readable_error(
        lambda: SchemaMigrationsProvider().create(props), "instance_identifier is empty"
    )
    assert "widgets" not in tables(mariadb, database)


# --- errors: one readable message, no secret --------------------------------------------------


def test_a_failing_statement_names_file_and_line_and_the_next_up_resumes(
    mariadb: MariaDBServer, database: str, secret_arn: str, location: Path
) -> None:
    broken = "INSERT INTO widgets (name) VALUES ('ok');\n\nINSERT INTO no_such_table VALUES (1);\n"
    write_migrations(location, {"V3__seed.sql": broken})
    props = make_props(mariadb, database, secret_arn, location)
    message = expect_readable_error(
        lambda: SchemaMigrationsProvider().create(props),
        "V3__seed.sql: statement 2 (line 3)",
        "1146",  # ER_NO_SUCH_TABLE, from the server
        forbidden=(mariadb.admin_password,),
    )
    assert message.startswith(f"schema migrations for database '{database}' on ")

    # The create failed, so Pulumi keeps no state and the next `pulumi up` creates again,
    # with the fixed file: the engine resumes after the statement that completed.
    fixed = broken.replace("no_such_table VALUES (1)", "widgets (name) VALUES ('second')")
    write_migrations(location, {"V3__seed.sql": fixed})
    created = SchemaMigrationsProvider().create(make_props(mariadb, database, secret_arn, location))
    assert created.outs is not None and created.outs["applied_version"] == "3"
    with mariadb.root_connection(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM widgets ORDER BY id")
        assert cur.fetchall() == (("ok",), ("second",))


def test_missing_secret_is_a_readable_error(
    aws: str, mariadb: MariaDBServer, database: str, location: Path
) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:appdb-nope-AbCdEf"
    props = make_props(mariadb, database, arn, location)
    expect_readable_error(lambda: SchemaMigrationsProvider().create(props), arn, database)


def test_malformed_secret_json_is_a_readable_error(
    aws: str, mariadb: MariaDBServer, database: str, location: Path
) -> None:
    raw = '{"username": "appdb_admin", "password": "' + mariadb.admin_password + '"'  # cut short
    arn = create_secret(raw=raw)
    props = make_props(mariadb, database, arn, location)
    expect_readable_error(
        lambda: SchemaMigrationsProvider().create(props),
        arn,
        forbidden=(mariadb.admin_password,),
    )


def test_wrong_password_rereads_the_secret_once_then_fails_readably(
    aws: str,
    mariadb: MariaDBServer,
    database: str,
    location: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    arn = create_secret(admin_secret(mariadb, database, password=wrong))
    reads = count_secret_reads(monkeypatch)
    props = make_props(mariadb, database, arn, location)
    message = expect_readable_error(
        lambda: SchemaMigrationsProvider().create(props),
        arn,
        "read again",
        forbidden=(wrong, mariadb.admin_password),
    )
    assert len(reads) == 2, message
    assert "widgets" not in tables(mariadb, database)


def test_a_secret_fixed_between_attempts_is_picked_up_on_the_retry(
    aws: str,
    mariadb: MariaDBServer,
    database: str,
    location: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stale = "stale-" + secrets.token_hex(8)
    arn = create_secret(admin_secret(mariadb, database, password=stale))
    # Right after the provider's first read, a rotation promotes the right password.
    reads = count_secret_reads(
        monkeypatch,
        after_first_read=lambda: put_secret(arn, admin_secret(mariadb, database)),
    )
    result = SchemaMigrationsProvider().create(make_props(mariadb, database, arn, location))
    assert result.outs is not None
    assert result.outs["applied_version"] == "2"
    assert len(reads) == 2
    assert "widgets" in tables(mariadb, database)


def test_untrusted_server_certificate_is_refused(
    mariadb: MariaDBServer, database: str, secret_arn: str, location: Path
) -> None:
    props = make_props(
        mariadb, database, secret_arn, location, ca_bundle=str(mariadb.foreign_ca_path)
    )
    expect_readable_error(
        lambda: SchemaMigrationsProvider().create(props),
        f"{mariadb.host}:{mariadb.port}",
        forbidden=(mariadb.admin_password,),
    )
    assert "widgets" not in tables(mariadb, database)


def count_secret_reads(
    monkeypatch: pytest.MonkeyPatch, after_first_read: Callable[[], None] | None = None
) -> list[str]:
    """Record each real read of the secret by the provider (optionally act after the first)."""
    real = migrator_secrets.fetch_database_secret
    reads: list[str] = []

    def recording(secret_arn: str, *args: Any, **kwargs: Any) -> Any:
        value = real(secret_arn, *args, **kwargs)
        reads.append(secret_arn)
        if len(reads) == 1 and after_first_read:
            after_first_read()
        return value

    monkeypatch.setattr(migrator_secrets, "fetch_database_secret", recording)
    return reads


# --- serialisation: what Pulumi stores in state and the provider host loads ------------------


def test_provider_serialises_by_reference_and_loads_in_a_fresh_interpreter(
    mariadb: MariaDBServer, database: str, secret_arn: str, location: Path
) -> None:
    provider = SchemaMigrationsProvider()
    # Use it first, as a program would, so any state it kept would be captured.
    created = provider.create(make_props(mariadb, database, secret_arn, location))
    assert created.outs is not None

    serialized = serialize_provider(provider)  # exactly what the SDK puts in `__provider`
    raw = base64.b64decode(serialized)
    assert b"infra.providers.migrations" in raw and b"SchemaMigrationsProvider" in raw
    for leaked in (
        mariadb.admin_password.encode(),
        b"boto",
        b"pymysql",
        b"Connection",
        b"secretsmanager",
        secret_arn.encode(),
    ):
        assert leaked not in raw, f"{leaked!r} captured in the serialised provider"

    # The provider host: a fresh interpreter in the project directory, as `python -m
    # pulumi.dynamic` runs there, unpickles the provider and calls it.
    olds = dict(created.outs)
    news = {**olds, "migrations": {**olds["migrations"], "V9__new.sql": "c9"}}
    script = (
        "import base64, json, sys, dill\n"
        "data = json.load(sys.stdin)\n"
        "provider = dill.loads(base64.b64decode(data['provider']))\n"
        "result = provider.diff('id', data['olds'], data['news'])\n"
        "same = provider.diff('id', data['olds'], data['olds'])\n"
        "print(json.dumps({'type': type(provider).__module__ + '.' + type(provider).__name__,\n"
        "  'attrs': sorted(vars(provider)), 'changes': result.changes,\n"
        "  'unchanged': same.changes,\n"
        "  'modules': sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "                    ('infra', 'migrator', '__main__'))}))\n"
    )
    completed = run_in_fresh_interpreter(
        script, json.dumps({"provider": serialized, "olds": olds, "news": news})
    )
    assert completed.returncode == 0, completed.stderr
    loaded = json.loads(completed.stdout)
    assert loaded["type"] == "infra.providers.migrations.SchemaMigrationsProvider"
    assert loaded["attrs"] == []
    assert loaded["changes"] is True
    assert loaded["unchanged"] is False
    assert "infra.providers.migrations" in loaded["modules"]


# --- Pulumi's provider host: the real `python -m pulumi.dynamic` process, over gRPC -----------


def test_pulumis_provider_host_runs_the_provider_from_the_project_directory(
    mariadb: MariaDBServer, database: str, secret_arn: str, location: Path
) -> None:
    """What `pulumi preview`/`up` do: the engine starts the Python provider host in the project
    directory and sends it the serialised provider with each request."""
    import grpc
    from pulumi.runtime import proto, rpc

    serialized = serialize_provider(SchemaMigrationsProvider())
    props = {**make_props(mariadb, database, secret_arn, location), "__provider": serialized}
    urn = "urn:pulumi:staging::appdb::pulumi-python:dynamic/appdb:SchemaMigrations::schema"
    with provider_host() as stub:
        created = stub.Create(proto.CreateRequest(urn=urn, properties=grpc_struct(props)))
        outs = rpc.deserialize_properties(created.properties)
        assert outs["applied"] == props["migrations"]
        assert mariadb.admin_password not in json.dumps(outs)

        no_change = stub.Diff(
            proto.DiffRequest(
                id=created.id, urn=urn, olds=grpc_struct(outs), news=grpc_struct(props)
            )
        )
        assert no_change.changes == proto.DiffResponse.DIFF_NONE
        write_migrations(location, {"V3__first_widget.sql": V3})
        news = {**props, "migrations": load_migrations(location).checksums()}
        some = stub.Diff(
            proto.DiffRequest(
                id=created.id, urn=urn, olds=grpc_struct(outs), news=grpc_struct(news)
            )
        )
        assert some.changes == proto.DiffResponse.DIFF_SOME
        assert list(some.replaces) == []

        # A failure as `pulumi up` would show it: the provider's traceback, ending in one
        # readable line, with no secret anywhere in it.
        put_secret(secret_arn, admin_secret(mariadb, database, password="not-the-password"))
        with pytest.raises(grpc.RpcError) as caught:
            stub.Update(
                proto.UpdateRequest(
                    id=created.id, urn=urn, olds=grpc_struct(outs), news=grpc_struct(news)
                )
            )
        details = caught.value.details()
        assert details is not None
        last_line = details.strip().splitlines()[-1]
        assert last_line.startswith(
            "infra.providers.migrations.SchemaMigrationsError: schema migrations for "
            f"database '{database}' on {mariadb.host}:{mariadb.port} failed: "
        ), last_line
        assert "access denied" in last_line
        assert "not-the-password" not in details
        assert mariadb.admin_password not in details
        assert "During handling of the above exception" not in details


# --- the program: where the resource sits in the stack ---------------------------------------


def test_the_program_declares_the_migrations_after_the_database_and_its_secret() -> None:
    # The real program's plans of both stacks, shared with the infra tests (one run per session).
    plans = stack_plans()
    for stack, plan in plans.items():
        (component,) = [r for r in plan.resources if r.type == "appdb:schema:SchemaMigrations"]
        (resource,) = [r for r in plan.resources if r.parent == component.urn]
        assert resource.type == "pulumi-python:dynamic/appdb:SchemaMigrations"
        (primary,) = [
            r
            for r in plan.resources
            if r.type == "aws:rds/instance:Instance" and "replicateSourceDb" not in r.inputs
        ]
        (secret_value,) = [
            r for r in plan.resources if r.type == "aws:secretsmanager/secretVersion:SecretVersion"
        ]
        assert primary.urn in resource.options["depends_on"]
        assert secret_value.urn in resource.options["depends_on"]

        inputs = resource.inputs
        assert inputs["migrations"] == load_migrations(ROOT / "schema").checksums()
        assert inputs["location"] == "schema"
        assert inputs["secret_arn"].startswith("arn:aws:secretsmanager:")
        # Nothing secret among the inputs (the SDK's serialised provider aside).
        secret_inputs = [k for k, v in inputs.items() if v == "[secret]" and k != "__provider"]
        assert secret_inputs == []
        assert not [k for k in inputs if "password" in k.lower()]
        assert inputs["snapshot_before_migrate"] is (stack == "production")
        assert inputs["instance_identifier"]
        assert "schemaVersion" in plan.outputs
