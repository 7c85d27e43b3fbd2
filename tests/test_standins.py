"""The stand-ins themselves: the MariaDB the suite starts enforces verified TLS."""

import boto3
import pymysql
import pytest


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
    import tempfile

    from standins.mariadb import MariaDBServer

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    MariaDBServer(host="127.0.0.1", port=3306, admin_password="unused")
    assert list(tmp_path.iterdir()) == []
