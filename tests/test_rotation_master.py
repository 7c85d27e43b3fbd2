"""Master password rotation: Secrets Manager's protocol over SQL, against MariaDB + moto."""

from __future__ import annotations

import pymysql
import pytest
from rotation_support import can_login, make_master, master_secret, stages, value

import rotation.master as master
from rotation.errors import RotationFailed
from rotation.master import MasterRotation, rotate_master
from standins.mariadb import MariaDBServer

NEW_PASSWORD = "N3w-master.Passw0rd~for+rotation=32ch"


# The password the next rotation generates (rotation.master generates it where it is set; the
# tests fix it to check logins with it).
NEXT_PASSWORD = [NEW_PASSWORD]


@pytest.fixture
def account(mariadb: MariaDBServer, database: str, aws: str):
    user, password = make_master(mariadb)
    arn = master_secret(mariadb, user, password, database)
    return mariadb, user, password, arn


@pytest.fixture
def setup(account, monkeypatch):
    monkeypatch.setattr(master, "generate_password", lambda _length: NEXT_PASSWORD[0])
    return account


def request(
    mariadb: MariaDBServer, arn: str, rotation: str = "r1", new_password: str = NEW_PASSWORD
) -> MasterRotation:
    NEXT_PASSWORD[0] = new_password
    return MasterRotation(
        secret_arn=arn,
        rotation=rotation,
        host=mariadb.host,
        port=mariadb.port,
        ca_bundle=str(mariadb.ca_path),
        connect_deadline=5.0,
        test_deadline=1.0,
    )


def test_staged_then_set_then_tested_then_promoted(setup, monkeypatch):
    mariadb, user, old_password, arn = setup
    initial_version = next(iter(stages(arn)))
    seen: list[str] = []

    def spy(name):
        real = getattr(master, name)

        def wrapper(*args, **kwargs):
            # The state of the world as each step starts.
            pending = stages(arn)
            seen.append(
                f"{name}: current={value(arn)['password'] == NEW_PASSWORD} "
                f"pending={any('AWSPENDING' in s for s in pending.values())} "
                f"db_new={can_login(mariadb, user, NEW_PASSWORD)}"
            )
            return real(*args, **kwargs)

        monkeypatch.setattr(master, name, wrapper)

    for step in ("create_secret", "set_secret", "test_secret", "finish_secret"):
        spy(step)

    result = rotate_master(request(mariadb, arn))

    assert seen == [
        "create_secret: current=False pending=False db_new=False",
        "set_secret: current=False pending=True db_new=False",  # staged, not yet set
        "test_secret: current=False pending=True db_new=True",  # set over SQL, not promoted
        "finish_secret: current=False pending=True db_new=True",  # tested
    ]
    assert result.rotated and result.previous_version_id == initial_version
    assert stages(arn) == {initial_version: ["AWSPREVIOUS"], result.version_id: ["AWSCURRENT"]}
    assert value(arn)["password"] == NEW_PASSWORD
    assert value(arn, "AWSPREVIOUS")["password"] == old_password
    # The other keys of the RDS secret shape are carried over unchanged.
    assert {k: v for k, v in value(arn).items() if k != "password"} == {
        k: v for k, v in value(arn, "AWSPREVIOUS").items() if k != "password"
    }
    assert can_login(mariadb, user, NEW_PASSWORD)
    assert not can_login(mariadb, user, old_password)


def test_the_new_password_is_generated_where_it_is_set(account):
    """No password is given to a rotation: it makes one of the configured length, RDS-safe."""
    mariadb, user, old_password, arn = account
    rotation = MasterRotation(
        secret_arn=arn,
        rotation="r1",
        password_length=20,
        host=mariadb.host,
        port=mariadb.port,
        ca_bundle=str(mariadb.ca_path),
        connect_deadline=5.0,
        test_deadline=1.0,
    )
    assert rotate_master(rotation).rotated
    generated = value(arn)["password"]
    assert len(generated) == 20 and generated != old_password
    assert not set(generated) & set("/@\"' ")
    assert can_login(mariadb, user, generated)
    # The same rotation again finds the version it staged: no second password.
    assert not rotate_master(rotation).rotated
    assert value(arn)["password"] == generated


def test_same_rotation_twice_does_nothing(setup):
    mariadb, _, _, arn = setup
    first = rotate_master(request(mariadb, arn))
    before = stages(arn)
    second = rotate_master(request(mariadb, arn))
    assert not second.rotated
    assert second.version_id == first.version_id
    assert stages(arn) == before


def test_failing_test_step_promotes_nothing_and_old_password_still_works(setup):
    mariadb, user, old_password, arn = setup
    current_before = value(arn)
    # One connection per user: the session that sets the password holds it, so testSecret's
    # fresh login is refused (error 1226) although the new password itself is right.
    root = mariadb.root_connection()
    with root.cursor() as cur:
        cur.execute(f"ALTER USER `{user}`@'%' WITH MAX_USER_CONNECTIONS 1")

    with pytest.raises(RotationFailed) as failure:
        rotate_master(request(mariadb, arn))

    message = str(failure.value)
    assert "testSecret" in message and "Nothing was promoted" in message
    assert "set back to the AWSCURRENT value" in message
    assert NEW_PASSWORD not in message and old_password not in message
    assert value(arn) == current_before  # AWSCURRENT unchanged
    assert value(arn, "AWSPENDING")["password"] == NEW_PASSWORD  # staged, not promoted
    assert can_login(mariadb, user, old_password)
    assert not can_login(mariadb, user, NEW_PASSWORD)

    # Fix the cause, re-run: the rotation resumes from the staged version and completes.
    with root.cursor() as cur:
        cur.execute(f"ALTER USER `{user}`@'%' WITH MAX_USER_CONNECTIONS 0")
    root.close()
    pending_version = next(v for v, s in stages(arn).items() if "AWSPENDING" in s)
    result = rotate_master(request(mariadb, arn))
    assert result.rotated and result.version_id == pending_version
    assert value(arn)["password"] == NEW_PASSWORD
    assert not any("AWSPENDING" in s for s in stages(arn).values())
    assert can_login(mariadb, user, NEW_PASSWORD)


def test_set_step_failure_promotes_nothing(setup):
    """The server refuses the ALTER USER (here a read-only server, as during a failover; a
    password-validation policy would do the same): nothing promoted, old password works."""
    mariadb, user, old_password, arn = setup
    current_before = value(arn)
    root = mariadb.root_connection()
    with root.cursor() as cur:
        cur.execute("SET GLOBAL read_only = 1")
        cur.execute(f"REVOKE SUPER, READ_ONLY ADMIN ON *.* FROM `{user}`@'%'")
    try:
        with pytest.raises(RotationFailed) as failure:
            rotate_master(request(mariadb, arn))
    finally:
        with root.cursor() as cur:
            cur.execute("SET GLOBAL read_only = 0")
        root.close()
    assert "setSecret" in str(failure.value)
    assert NEW_PASSWORD not in str(failure.value)
    assert value(arn) == current_before
    assert can_login(mariadb, user, old_password)
    # And once the cause is gone, the same rotation completes.
    assert rotate_master(request(mariadb, arn)).rotated
    assert can_login(mariadb, user, NEW_PASSWORD)


def test_run_killed_after_set_resumes_with_pending_password(setup, monkeypatch):
    mariadb, user, old_password, arn = setup

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt("killed before finishSecret")

    monkeypatch.setattr(master, "finish_secret", killed)
    with pytest.raises(KeyboardInterrupt):
        rotate_master(request(mariadb, arn))
    # The database has the new password, AWSCURRENT still the old one.
    assert value(arn)["password"] == old_password
    assert can_login(mariadb, user, NEW_PASSWORD)
    monkeypatch.undo()

    result = rotate_master(request(mariadb, arn))  # setSecret falls back to AWSPENDING
    assert result.rotated
    assert value(arn)["password"] == NEW_PASSWORD
    assert value(arn, "AWSPREVIOUS")["password"] == old_password


def test_secret_and_database_disagree_is_a_clear_error(setup):
    mariadb, user, _, arn = setup
    root = mariadb.root_connection()
    with root.cursor() as cur:
        cur.execute(f"ALTER USER `{user}`@'%' IDENTIFIED BY 'changed-by-hand-1234567890'")
    root.close()
    current_before = value(arn)
    with pytest.raises(RotationFailed, match="accepts neither the AWSCURRENT nor the AWSPENDING"):
        rotate_master(request(mariadb, arn))
    assert value(arn) == current_before


def test_a_second_rotation_keeps_one_previous(setup):
    mariadb, user, _, arn = setup
    first = rotate_master(request(mariadb, arn, "r1"))
    second = rotate_master(request(mariadb, arn, "r2", new_password="An0ther-New.Password~2"))
    assert second.previous_version_id == first.version_id
    assert value(arn, "AWSPREVIOUS")["password"] == NEW_PASSWORD
    assert [s for s in stages(arn).values()].count(["AWSPREVIOUS"]) == 1
    assert can_login(mariadb, user, "An0ther-New.Password~2")
    with pytest.raises(pymysql.err.OperationalError):
        mariadb.connect(user=user, password=NEW_PASSWORD)
