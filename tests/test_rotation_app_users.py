"""Application users: least privilege, alternating accounts, drift repair, zero downtime."""

from __future__ import annotations

import secrets
import threading
import time

import boto3
import pymysql
import pytest
from rotation_support import make_master, master_secret, stages, value
from support_aws import create_secret

from rotation.app_users import (
    ApplicationUsers,
    RoleEndpoint,
    apply_application_users,
    read_application_users,
)
from rotation.errors import RotationFailed
from rotation.grants import schema_target
from standins.mariadb import MariaDBServer

ER_ACCESS_DENIED = 1045
DENIED = (1044, 1142, 1227, 1370)  # db / table / privilege / routine access denied


@pytest.fixture
def env(mariadb: MariaDBServer, database: str, aws: str):
    """A schema with a table and a function, a master account and its secret, role secrets."""
    user, password = make_master(mariadb)
    conn = mariadb.connect(database=database)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50))")
        cur.execute("INSERT INTO items VALUES (1, 'one')")
        cur.execute("CREATE FUNCTION double_it(x INT) RETURNS INT DETERMINISTIC RETURN x * 2")
    conn.close()
    return {
        "mariadb": mariadb,
        "database": database,
        "master_arn": master_secret(mariadb, user, password, database),
        "app_arn": create_secret(),  # created empty, as the stack creates them
        "readonly_arn": create_secret(),
        # Accounts are server-wide and the server is shared by the session: a prefix per test.
        "prefix": f"t{secrets.token_hex(3)}_",
    }


def users_request(env, rotation: str, **overrides) -> ApplicationUsers:
    mariadb = env["mariadb"]
    roles = {
        "app": RoleEndpoint(env["app_arn"], mariadb.host, mariadb.port),
        # "localhost" stands for the replica's address (the server's certificate covers it).
        "readonly": RoleEndpoint(env["readonly_arn"], "localhost", mariadb.port),
    }
    roles.update(overrides.pop("roles", {}))
    return ApplicationUsers(
        master_secret_arn=env["master_arn"],
        schema=env["database"],
        roles=roles,
        rotation=rotation,
        ca_bundle=str(mariadb.ca_path),
        connect_deadline=5.0,
        test_deadline=1.0,
        account_prefix=env["prefix"],
        **overrides,
    )


def login(env, secret: dict):
    return env["mariadb"].connect(
        database=env["database"], user=secret["username"], password=secret["password"]
    )


def denied(conn, sql: str) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        return False
    except (pymysql.err.OperationalError, pymysql.err.ProgrammingError) as exc:
        assert exc.args[0] in DENIED, exc
        return True


def test_least_privilege(env):
    apply_application_users(users_request(env, "r1"))
    app, readonly = value(env["app_arn"]), value(env["readonly_arn"])
    p = env["prefix"]
    assert (app["username"], readonly["username"]) == (f"{p}app_a", f"{p}readonly_a")
    assert app["dbname"] == env["database"] and app["engine"] == "mysql"
    assert readonly["host"] == "localhost"  # the replica endpoint

    conn = login(env, app)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO items VALUES (2, 'two')")
        cur.execute("UPDATE items SET name = 'deux' WHERE id = 2")
        cur.execute("SELECT double_it(21)")
        assert cur.fetchone() == (42,)
        cur.execute("DELETE FROM items WHERE id = 2")
    assert denied(conn, "CREATE TABLE nope (id INT)")
    assert denied(conn, "DROP TABLE items")
    assert denied(conn, "ALTER TABLE items ADD COLUMN extra INT")
    assert denied(conn, f"GRANT SELECT ON `{env['database']}`.* TO {p}readonly_b")
    assert denied(conn, "CREATE USER intruder IDENTIFIED BY 'x'")
    assert denied(conn, "SELECT * FROM mysql.user")
    conn.close()

    conn = login(env, readonly)
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM items WHERE id = 1")
        assert cur.fetchone() == ("one",)
    assert denied(conn, "INSERT INTO items VALUES (3, 'three')")
    assert denied(conn, "UPDATE items SET name = 'x'")
    assert denied(conn, "DELETE FROM items")
    assert denied(conn, "CREATE TABLE nope (id INT)")
    conn.close()

    # Only TLS logins are accepted for these accounts (REQUIRE SSL), on top of the server.
    root = env["mariadb"].root_connection()
    with root.cursor() as cur:
        cur.execute(
            "SELECT ssl_type FROM mysql.user WHERE user IN (%s, %s)",
            (app["username"], readonly["username"]),
        )
        assert {row[0] for row in cur.fetchall()} == {"ANY"}
    root.close()


def test_rotation_alternates_and_previous_account_keeps_working(env):
    p = env["prefix"]
    states = apply_application_users(users_request(env, "r1"))
    first = value(env["app_arn"])
    assert states["app"].active_user == f"{p}app_a" and states["app"].rotated

    states = apply_application_users(users_request(env, "r2"))
    second = value(env["app_arn"])
    assert states["app"].active_user == second["username"] == f"{p}app_b"
    assert [states["app"].version_id] == [
        v for v, labels in stages(env["app_arn"]).items() if "AWSCURRENT" in labels
    ]
    assert value(env["app_arn"], "AWSPREVIOUS") == first
    login(env, first).close()  # the previous account still works
    login(env, second).close()

    apply_application_users(users_request(env, "r3"))
    third = value(env["app_arn"])
    assert third["username"] == f"{p}app_a" and third["password"] != first["password"]
    login(env, second).close()  # still works until the next rotation
    with pytest.raises(pymysql.err.OperationalError) as refused:
        login(env, first)  # app_a's old password is gone
    assert refused.value.args[0] == ER_ACCESS_DENIED


def test_a_refused_statement_is_one_readable_rotation_failure(env):
    master = value(env["master_arn"])
    root = env["mariadb"].root_connection()
    try:
        with root.cursor() as cur:
            # Neither CREATE USER nor INSERT (on mysql.*): CREATE USER is refused.
            cur.execute("REVOKE CREATE USER, INSERT ON *.* FROM %s@'%%'", (master["username"],))
    finally:
        root.close()
    with pytest.raises(RotationFailed, match=r"refused a statement \(error 1227") as caught:
        apply_application_users(users_request(env, "r1"))
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert master["password"] not in str(caught.value)
    described = boto3.client("secretsmanager").describe_secret(SecretId=env["app_arn"])
    assert not described.get("VersionIdsToStages")  # the empty secret got no value


def test_same_rotation_value_twice_does_nothing(env):
    apply_application_users(users_request(env, "r1"))
    before = (stages(env["app_arn"]), value(env["app_arn"]), value(env["readonly_arn"]))
    states = apply_application_users(users_request(env, "r1"))
    assert not states["app"].rotated and not states["readonly"].rotated
    assert (stages(env["app_arn"]), value(env["app_arn"]), value(env["readonly_arn"])) == before


def test_drift_is_reported_and_repaired(env):
    request = users_request(env, "r1")
    apply_application_users(request)
    target, p = schema_target(env["database"]), env["prefix"]
    root = env["mariadb"].root_connection()
    with root.cursor() as cur:
        cur.execute(f"REVOKE DELETE ON {target} FROM {p}app_a")  # removed by hand
        cur.execute(f"GRANT DROP ON {target} TO {p}readonly_a")  # added by hand
        cur.execute(f"GRANT PROCESS ON *.* TO {p}readonly_a")
    drifted = read_application_users(request)
    app_grants = drifted["app"].grants[f"{p}app_a"]
    readonly_grants = drifted["readonly"].grants[f"{p}readonly_a"]
    assert app_grants is not None and readonly_grants is not None  # both users exist
    assert f"DELETE ON {target}" not in app_grants
    assert "PROCESS ON *.*" in readonly_grants

    repaired = apply_application_users(request)
    assert not repaired["app"].rotated  # same rotation value: only the grants change
    assert repaired["app"].grants[f"{p}app_a"] == sorted(
        f"{p} ON {target}" for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "EXECUTE")
    )
    assert repaired["readonly"].grants[f"{p}readonly_a"] == [f"SELECT ON {target}"]
    assert repaired["app"].grants[f"{p}app_b"] is None  # not created until the first rotation
    with root.cursor() as cur:
        cur.execute(f"SHOW GRANTS FOR {p}readonly_a")
        shown = " ".join(row[0] for row in cur.fetchall())
    root.close()
    assert "DROP" not in shown and "PROCESS" not in shown


def test_a_run_killed_before_the_flip_resumes_with_the_staged_value(env, monkeypatch):
    from rotation.secret_store import SecretStore

    apply_application_users(users_request(env, "r1"))
    active = value(env["app_arn"])
    real_promote = SecretStore.promote

    def killed(self, secret_arn, token):
        raise KeyboardInterrupt("killed before finishSecret")

    monkeypatch.setattr(SecretStore, "promote", killed)
    with pytest.raises(KeyboardInterrupt):
        apply_application_users(users_request(env, "r2"))
    staged = value(env["app_arn"], "AWSPENDING")
    assert value(env["app_arn"]) == active  # not flipped
    login(env, staged).close()  # the staged account was set up before the kill
    monkeypatch.setattr(SecretStore, "promote", real_promote)

    states = apply_application_users(users_request(env, "r2"))
    assert states["app"].rotated
    assert value(env["app_arn"]) == staged  # the staged value, not a second new password
    login(env, active).close()  # the previous account still works


def test_failed_test_step_does_not_flip_the_secret(env):
    apply_application_users(users_request(env, "r1"))
    before = value(env["app_arn"])
    mariadb = env["mariadb"]
    # Clients of this role would connect to an endpoint where the new account cannot log in.
    closed_port = RoleEndpoint(env["app_arn"], mariadb.host, 1)
    with pytest.raises(RotationFailed, match="failed at testSecret") as failure:
        apply_application_users(users_request(env, "r2", roles={"app": closed_port}))
    assert "was not flipped" in str(failure.value)
    assert value(env["app_arn"]) == before
    login(env, before).close()
    # Back to the right endpoint: the re-run completes the rotation.
    states = apply_application_users(users_request(env, "r2"))
    assert states["app"].active_user == f"{env['prefix']}app_b"


def test_zero_failed_connections_through_three_rotations(env):
    """A client connects every 50 ms with whatever the app secret holds, re-reading the
    secret only when a login is refused; three rotations must cost it no connection."""
    apply_application_users(users_request(env, "r0"))
    mariadb, arn = env["mariadb"], env["app_arn"]
    secrets_client = boto3.client("secretsmanager")
    counts = {"connections": 0, "rereads": 0, "failed": 0}
    stop = threading.Event()

    def read_secret() -> dict:
        import json

        response = secrets_client.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")
        return json.loads(response["SecretString"])

    def client() -> None:
        secret = read_secret()
        while not stop.is_set():
            for attempt in (1, 2):
                try:
                    conn = mariadb.connect(
                        database=env["database"],
                        user=secret["username"],
                        password=secret["password"],
                    )
                    with conn.cursor() as cur:
                        cur.execute("SELECT COUNT(*) FROM items")
                    conn.close()
                    counts["connections"] += 1
                    break
                except pymysql.err.OperationalError as exc:
                    if exc.args[0] == ER_ACCESS_DENIED and attempt == 1:
                        counts["rereads"] += 1
                        secret = read_secret()
                        continue
                    counts["failed"] += 1
                    break
            time.sleep(0.05)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        time.sleep(0.3)
        users = []
        for rotation in ("r1", "r2", "r3"):
            apply_application_users(users_request(env, rotation))
            users.append(value(arn)["username"])
            time.sleep(0.4)
    finally:
        stop.set()
        thread.join()
    summary = (
        f"zero-downtime: {counts['connections']} connections through 3 rotations "
        f"({' -> '.join(users)}), {counts['rereads']} secret re-reads after a refused login, "
        f"FAILED CONNECTIONS: {counts['failed']}"
    )
    print("\n" + summary)
    p = env["prefix"]
    assert users == [f"{p}app_b", f"{p}app_a", f"{p}app_b"]
    assert counts["connections"] >= 20, summary
    assert counts["failed"] == 0, summary
