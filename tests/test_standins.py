"""The stand-ins themselves: the MariaDB the suite starts enforces verified TLS; the command
that keeps them running for a person (scripts/standins)."""

import json
import os
import subprocess
import tempfile
from pathlib import Path

import boto3
import pymysql
import pytest

from standins.mariadb import MariaDBServer

ROOT = Path(__file__).resolve().parent.parent


def test_mariadb_requires_tls_and_presents_a_certificate_from_the_test_ca(mariadb):
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cur.fetchone()[1]
    with pytest.raises(pymysql.err.OperationalError):
        mariadb.connect(ssl_disabled=True)
    with pytest.raises(pymysql.err.OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
        mariadb.connect(ssl_ca=str(mariadb.foreign_ca_path))


def test_moto_server_answers_secrets_manager(aws):
    client = boto3.client("secretsmanager")
    arn = client.create_secret(Name="standin-check", SecretString="{}")["ARN"]
    assert client.get_secret_value(SecretId=arn)["SecretString"] == "{}"


def test_describing_a_server_without_starting_it_leaves_no_directory(tmp_path, monkeypatch):
    """tests/vanishing_migrator.py describes the session's server this way: every test run
    used to leave an empty /tmp/mariadb-* directory behind."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    MariaDBServer(host="127.0.0.1", port=3306, admin_password="unused")
    assert list(tmp_path.iterdir()) == []


def test_standins_command_keeps_them_running_until_stopped(tmp_path):
    """`scripts/standins start` returns with both stand-ins up, set up as a deployed stack,
    prints how to reach them without the password, and `stop` ends them and cleans up."""
    state = tmp_path / "standins"
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}  # no venv active

    def standins(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / "scripts" / "standins"), *args, "--state-dir", str(state)],
            capture_output=True, text=True, env=env, timeout=180, check=False,
        )  # fmt: skip

    started = standins("start")
    assert started.returncode == 0, started.stdout + started.stderr
    described = json.loads((state / "state.json").read_text())
    dsn = f"mysql://appdb_admin@127.0.0.1:{described['port']}/appdb"
    for shown in (dsn, described["secrets"]["master"], described["ca_bundle"], "state/env"):
        assert shown.replace("state/env", "standins/env") in started.stdout, shown
    exports = (state / "env").read_text()
    assert f"export AWS_ENDPOINT_URL={described['aws_endpoint']}" in exports
    assert f"export APPDB_SECRET_ARN={described['secrets']['master']}" in exports
    try:
        client = boto3.client(
            "secretsmanager", endpoint_url=described["aws_endpoint"], region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        master = json.loads(
            client.get_secret_value(SecretId=described["secrets"]["master"])["SecretString"]
        )
        app = json.loads(
            client.get_secret_value(SecretId=described["secrets"]["app"])["SecretString"]
        )
        # Reachable as printed: verified TLS with the printed CA, the secret's credentials.
        for user, password in (
            (master["username"], master["password"]),
            (app["username"], app["password"]),
        ):
            pymysql.connect(
                host="127.0.0.1", port=described["port"], user=user, password=password,
                database="appdb", ssl_ca=described["ca_bundle"], ssl_verify_cert=True,
                ssl_verify_identity=True,
            ).close()  # fmt: skip
        kept = [started.stdout, (state / "state.json").read_text(), exports]
        assert not [text for text in kept if master["password"] in text]

        again = standins("start")  # already running: says so, starts nothing
        assert again.returncode == 0 and "already running" in again.stdout
        assert json.loads((state / "state.json").read_text())["pid"] == described["pid"]

        rotated = standins("rotate")
        assert rotated.returncode == 0, rotated.stderr
        assert "app_a -> app_b" in rotated.stdout
        previous = client.get_secret_value(
            SecretId=described["secrets"]["master"], VersionStage="AWSPREVIOUS"
        )
        assert json.loads(previous["SecretString"])["password"] == master["password"]
        assert master["password"] not in rotated.stdout + rotated.stderr
    finally:
        stopped = standins("stop")
    assert stopped.returncode == 0, stopped.stderr
    for pid in (described["pid"], described["mariadb_pid"]):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not state.exists()
    assert standins("status").returncode == 1
