"""Rolling back to AWSPREVIOUS (scripts/rollback-credentials), against MariaDB + moto."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rotation_support import can_login, master_account, stages, value
from support_aws import create_secret

import rotation.master
from rotation.app_users import ApplicationUsers, RoleEndpoint, apply_application_users
from rotation.errors import RotationError
from rotation.master import MasterRotation, rotate_master
from rotation.rollback import rollback_master, rollback_role
from standins.mariadb import MariaDBServer

ROOT = Path(__file__).resolve().parent.parent
ROTATED = "Rotated-Master.Password~for+rollback"


@pytest.fixture
def master(mariadb: MariaDBServer, database: str, aws: str, monkeypatch) -> dict:
    # The rotation generates its password where it sets it; fixed here to check logins.
    monkeypatch.setattr(rotation.master, "generate_password", lambda _length: ROTATED)
    return master_account(mariadb, database)


def rotate(mariadb: MariaDBServer, master: dict, rotation: str):
    return rotate_master(
        MasterRotation(
            secret_arn=master["arn"], rotation=rotation,
            ca_bundle=str(mariadb.ca_path), connect_deadline=5, test_deadline=1,
        )
    )  # fmt: skip


def _rollback_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "rollback-credentials"), *args],
        capture_output=True, text=True, env=env or dict(os.environ), timeout=60, check=False,
    )  # fmt: skip


def test_master_rollback_with_the_script_restores_the_previous_password(mariadb, master):
    rotated = rotate(mariadb, master, "r1")
    completed = _rollback_cli(
        "master", "--secret-id", master["arn"], "--ca-bundle", str(mariadb.ca_path),
        "--connect-deadline", "5",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert f"version {rotated.previous_version_id}" in completed.stdout
    assert ROTATED not in completed.stdout + completed.stderr
    assert master["password"] not in completed.stdout + completed.stderr
    assert value(master["arn"])["password"] == master["password"]
    assert sorted(stages(master["arn"])[rotated.version_id]) == ["AWSPREVIOUS", "appdb-rolled-back"]
    assert can_login(mariadb, master["user"], master["password"])
    assert not can_login(mariadb, master["user"], ROTATED)


def test_master_rollback_without_a_previous_version_is_refused(mariadb, master):
    with pytest.raises(RotationError, match="nothing to roll back to"):
        rollback_master(master["arn"], ca_bundle=str(mariadb.ca_path), connect_deadline=5)


def test_master_rollback_refused_by_the_database_is_one_readable_message(mariadb, master):
    rotate(mariadb, master, "r1")
    unknown = "Neither-secret.knows~this+one"
    root = mariadb.root_connection()
    try:
        with root.cursor() as cur:
            cur.execute("ALTER USER %s@'%%' IDENTIFIED BY %s", (master["user"], unknown))
    finally:
        root.close()
    with pytest.raises(RotationError, match="nothing was changed") as failure:
        rollback_master(master["arn"], ca_bundle=str(mariadb.ca_path), connect_deadline=5)
    message = str(failure.value)
    assert ROTATED not in message and master["password"] not in message
    assert unknown not in message
    assert value(master["arn"])["password"] == ROTATED  # AWSCURRENT not moved


def test_role_rollback_flips_to_the_previous_account_without_sql(mariadb, master):
    app_arn = create_secret()

    def apply(rotation: str) -> None:
        apply_application_users(
            ApplicationUsers(
                master_secret_arn=master["arn"], schema=master["database"],
                roles={"app": RoleEndpoint(app_arn, mariadb.host, mariadb.port)},
                rotation=rotation, ca_bundle=str(mariadb.ca_path), connect_deadline=5,
                test_deadline=1, account_prefix="rb_",
            )
        )  # fmt: skip

    apply("r1")
    apply("r2")
    assert value(app_arn)["username"] == "rb_app_b"
    result = rollback_role(app_arn, ca_bundle=str(mariadb.ca_path), connect_deadline=5)
    assert result.username == "rb_app_a"
    # Once more would flip back to the rotated account: refused, nothing moves.
    with pytest.raises(RotationError, match="already rolled back"):
        rollback_role(app_arn, ca_bundle=str(mariadb.ca_path), connect_deadline=5)
    previous = value(app_arn)
    assert previous["username"] == "rb_app_a"
    assert can_login(mariadb, "rb_app_a", previous["password"], master["database"])
    root = mariadb.root_connection()
    with root.cursor() as cur:
        cur.execute("DROP USER IF EXISTS rb_app_a, rb_app_b")
    root.close()


def test_a_second_master_rollback_is_refused_instead_of_undoing_the_first(mariadb, master):
    """Rolling back twice used to flip AWSCURRENT back to the rotated version, silently."""
    rotated = rotate(mariadb, master, "r1")
    common = ("master", "--secret-id", master["arn"], "--ca-bundle", str(mariadb.ca_path))
    first = _rollback_cli(*common, "--connect-deadline", "5")
    assert first.returncode == 0, first.stderr
    assert "running it again is refused" in first.stdout
    second = _rollback_cli(*common, "--connect-deadline", "5")
    assert second.returncode == 1, second.stdout
    assert "already rolled back" in second.stderr
    assert f"version {rotated.version_id}" in second.stderr
    assert "appdb:credentialsRotation" in second.stderr  # what to do instead
    assert "Traceback" not in second.stderr
    # Nothing moved: the database and AWSCURRENT still hold the pre-rotation password.
    assert value(master["arn"])["password"] == master["password"]
    assert can_login(mariadb, master["user"], master["password"])
    assert not can_login(mariadb, master["user"], ROTATED)

    # The next rotation moves forward as usual, and its rollback is allowed again.
    rotate(mariadb, master, "r2")
    third = _rollback_cli(*common, "--connect-deadline", "5")
    assert third.returncode == 0, third.stderr
    assert value(master["arn"])["password"] == master["password"]


def test_no_region_is_one_clear_error_not_a_traceback(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"}
    }
    env["AWS_CONFIG_FILE"] = str(tmp_path / "no-such-config")  # no profile region either
    completed = _rollback_cli("master", "--secret-id", "appdb/production/rds/master", env=env)
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr and "NoRegionError" not in completed.stderr
    assert "no AWS region" in completed.stderr
    assert "--region" in completed.stderr and "AWS_REGION" in completed.stderr
