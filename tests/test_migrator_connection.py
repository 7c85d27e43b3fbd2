"""Connecting: verified TLS, bounded retry, wrong password; the CLI's handling of secrets."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from migrator_support import ROOT, one_row, run_cli, settings_for, tables, write_migrations

from migrator.connection import connect, mask_dsn, parse_dsn
from migrator.errors import AuthenticationFailed, ConfigurationError, ConnectionFailed
from standins.mariadb import MariaDBServer, free_port


def test_verified_tls_connection_to_the_server(mariadb: MariaDBServer, database: str) -> None:
    conn = connect(settings_for(mariadb, database))
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
            _, version = one_row(cur)
            cur.execute("SELECT DATABASE()")
            assert one_row(cur)[0] == database
    finally:
        conn.close()
    assert version.startswith("TLS")


def test_untrusted_server_certificate_is_refused_without_retrying(
    mariadb: MariaDBServer, database: str
) -> None:
    settings = settings_for(
        mariadb, database, ca_bundle=str(mariadb.foreign_ca_path), connect_deadline=30.0
    )
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as caught:
        connect(settings)
    assert time.monotonic() - started < 5  # a verification failure is not retried
    message = str(caught.value)
    assert f"127.0.0.1:{mariadb.port}" in message
    assert "certificate verify failed" in message
    assert mariadb.admin_password not in message


@pytest.mark.parametrize("content", [None, "<html>Not Found</html>\n"])
def test_unusable_ca_bundle_is_connection_failed_naming_it(
    mariadb: MariaDBServer, database: str, tmp_path: Path, content: str | None
) -> None:
    # Missing, or not PEM (e.g. an error page saved in place of RDS's bundle): one
    # ConnectionFailed naming the file, before any attempt, rather than a raw ssl.SSLError.
    bundle = tmp_path / "global-bundle.pem"
    if content is not None:
        bundle.write_text(content)
    settings = settings_for(mariadb, database, ca_bundle=str(bundle), connect_deadline=30.0)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match=f"cannot read CA bundle {bundle}: ") as caught:
        connect(settings)
    assert time.monotonic() - started < 5
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert mariadb.admin_password not in str(caught.value)


def test_unreachable_host_retries_until_the_deadline_then_names_it() -> None:
    port = free_port()  # nothing listens here
    settings = settings_for_closed_port(port, deadline=1.5)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as caught:
        connect(settings)
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 5
    message = str(caught.value)
    assert f"cannot connect to 127.0.0.1:{port} after" in message
    assert "attempt(s) over 1.5s" in message
    assert "Connection refused" in message
    assert "attempt(s)" in message and not message.startswith("cannot connect to 127.0.0.1:0")


def settings_for_closed_port(port: int, deadline: float):
    return parse_dsn(f"mysql://someone:hunter2@127.0.0.1:{port}/app", connect_deadline=deadline)


def test_wrong_password_is_authentication_failed_without_the_password(
    mariadb: MariaDBServer, database: str
) -> None:
    wrong = "not-the-password-4711"
    with pytest.raises(AuthenticationFailed) as caught:
        connect(settings_for(mariadb, database, password=wrong, connect_deadline=30.0))
    message = str(caught.value)
    assert f"cannot log in to 127.0.0.1:{mariadb.port} as '{mariadb.admin_user}'" in message
    assert wrong not in message and mariadb.admin_password not in message


def test_plaintext_connection_is_refused_by_a_tls_only_server(
    mariadb: MariaDBServer, database: str
) -> None:
    with pytest.raises(ConnectionFailed) as caught:
        connect(settings_for(mariadb, database, tls=False))
    assert mariadb.admin_password not in str(caught.value)


def test_system_trust_store_still_checks_the_host_name(mariadb: MariaDBServer) -> None:
    from migrator.connection import tls_context

    context = tls_context(None)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_dsn_parsing_and_masking() -> None:
    settings = parse_dsn("mysql://app%40ops:p%3Ass@db.example:3307/appdb")
    assert (settings.user, settings.password, settings.host, settings.port, settings.database) == (
        "app@ops",
        "p:ss",
        "db.example",
        3307,
        "appdb",
    )
    assert "p:ss" not in repr(settings)
    assert mask_dsn("mysql://u:secret@h:1/d") == "mysql://u:***@h:1/d"
    with pytest.raises(ConfigurationError) as caught:
        parse_dsn("mysql://u:secret@h:1/")
    assert "secret" not in str(caught.value)


def test_cli_info_plan_validate_migrate(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(
        tmp_path,
        {
            "V1__a.sql": "CREATE TABLE a (x INT);\n\nINSERT INTO a VALUES (1);",
            "R__v.sql": "SELECT 1;",
        },
    )
    common = ["--dsn", mariadb.dsn(database), "--ca-bundle", str(mariadb.ca_path)]
    common += ["--locations", str(location)]
    plan = run_cli("plan", *common)
    assert plan.returncode == 0, plan.stderr
    assert "-- V1__a.sql\n-- [1] line 1\nCREATE TABLE a (x INT);\n-- [2] line 3\n" in plan.stdout
    assert "a" not in tables(mariadb, database)

    migrate = run_cli("migrate", *common)
    assert migrate.returncode == 0, migrate.stderr
    assert "applied V1__a.sql\napplied R__v.sql\n" in migrate.stdout

    info = run_cli("info", *common)
    assert info.returncode == 0, info.stderr
    lines = info.stdout.splitlines()
    assert lines[0].split() == [
        "Version",
        "Description",
        "Script",
        "State",
        "Installed",
        "on",
        "ms",
    ]
    # The columns line up: each starts where its heading starts, on every line.
    starts = [lines[0].index(h) for h in ("Description", "Script", "State", "Installed on")]
    for line in lines[2:]:
        assert all(line[s - 2 : s] == "  " and line[s] != " " for s in starts), lines
    assert any(line.startswith("1 ") and " applied " in line for line in lines)
    assert mariadb.admin_password not in info.stdout + info.stderr

    (location / "V1__a.sql").write_text("CREATE TABLE a (x BIGINT);")
    validate = run_cli("validate", *common)
    assert validate.returncode == 1
    assert "V1__a.sql: applied migration changed since it was applied" in validate.stderr


def test_cli_never_prints_the_password(mariadb: MariaDBServer, database: str) -> None:
    dsn = f"mysql://{mariadb.admin_user}:wrong-pw-1234@127.0.0.1:{mariadb.port}/{database}"
    result = run_cli("migrate", "--dsn", dsn, "--ca-bundle", str(mariadb.ca_path))
    assert result.returncode == 1
    assert "access denied" in result.stderr
    assert "wrong-pw-1234" not in result.stdout + result.stderr


def test_cli_insecure_opt_out_warns(mariadb: MariaDBServer, database: str) -> None:
    result = run_cli(
        "info", "--dsn", mariadb.dsn(database), "--insecure-no-tls", "--connect-deadline", "1"
    )
    assert "WARNING: --insecure-no-tls" in result.stderr
    # This server requires TLS, so the plaintext attempt is refused.
    assert result.returncode == 1
    assert mariadb.admin_password not in result.stdout + result.stderr


# -- the CLI's own edges (issue 11, point 10) --------------------------------------------------

# The stack's generated passwords may hold any of these; none may ever be printed.
CANARY = "Cx7/pw#frag?q=1@at[br]%41:colon"


@pytest.mark.parametrize(
    "dsn",
    [
        f"mysql://admin:{CANARY}@db.example:3306/app",  # unencoded / # ? @ [ ] % :
        f"admin:{CANARY}@db.example:3306/app",  # no mysql://
        f"mysql://admin:{CANARY}@db.example:notaport/app",
        f"mysql://admin:{CANARY}@db.example:3306/",  # no database
        f"mysql://admin:{CANARY}",  # no host
        f"postgres://admin:{CANARY}@db.example/app",
    ],
)
def test_no_dsn_problem_prints_the_password_or_a_traceback(dsn: str, tmp_path: Path) -> None:
    result = run_cli(
        "info", "--dsn", dsn, "--connect-deadline", "0.5", "--locations", str(tmp_path)
    )
    output = result.stdout + result.stderr
    assert result.returncode in (1, 2), output
    assert "Traceback" not in output
    for fragment in ("Cx7", "frag", "q=1", "[br]", "colon"):
        assert fragment not in output, output


def test_a_dsn_password_with_reserved_characters_connects_unencoded(
    mariadb: MariaDBServer, database: str
) -> None:
    password = "P/w#d?x@y[z]%zz:1"
    root = mariadb.root_connection()
    with root.cursor() as cur:
        cur.execute("CREATE USER 'odd'@'%%' IDENTIFIED BY %s", (password,))
        cur.execute(f"GRANT ALL ON `{database}`.* TO 'odd'@'%'")
    root.close()
    settings = parse_dsn(f"mysql://odd:{password}@127.0.0.1:{mariadb.port}/{database}")
    assert (settings.user, settings.password, settings.database) == ("odd", password, database)
    assert password not in mask_dsn(f"mysql://odd:{password}@h/d")


def test_the_password_can_come_from_the_environment_instead_of_the_dsn(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(tmp_path, {"V1__a.sql": "CREATE TABLE a (x INT);"})
    dsn = f"mysql://{mariadb.admin_user}@{mariadb.host}:{mariadb.port}/{database}"
    env = dict(os.environ, APPDB_MIGRATE_PASSWORD=mariadb.admin_password)
    env.pop("APPDB_MIGRATE_DSN", None)
    args = ("--dsn", dsn, "--ca-bundle", str(mariadb.ca_path), "--locations", str(location))
    result = run_cli("migrate", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert "a" in tables(mariadb, database)
    assert mariadb.admin_password not in result.stdout + result.stderr


def test_the_password_can_be_typed_at_a_prompt(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = write_migrations(tmp_path, {"V1__a.sql": "CREATE TABLE a (x INT);"})
    dsn = f"mysql://{mariadb.admin_user}@{mariadb.host}:{mariadb.port}/{database}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPDB_MIGRATE_")}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "migrate"),
            "migrate",
            "--ask-password",
            "--dsn",
            dsn,
            "--ca-bundle",
            str(mariadb.ca_path),
            "--locations",
            str(location),
        ],
        input=mariadb.admin_password + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        start_new_session=True,  # no terminal: getpass reads the piped line
    )
    assert result.returncode == 0, result.stderr
    assert "a" in tables(mariadb, database)
    assert mariadb.admin_password not in result.stdout + result.stderr


class _ServerWithoutTLS:
    """Speaks just enough MySQL protocol to greet a client without offering TLS: a server
    (or proxy) that cannot do TLS."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.greetings = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        capabilities = 0x0000F7FF & ~0x0800  # the usual flags, CLIENT_SSL (0x800) off
        payload = (
            b"\x0a"
            + b"8.4.0-no-tls\x00"
            + struct.pack("<I", 7)
            + b"abcdefgh\x00"
            + struct.pack("<H", capabilities & 0xFFFF)
            + b"\x21"
            + struct.pack("<H", 2)
            + struct.pack("<H", 0x0008)
            + b"\x15"
            + b"\x00" * 10
            + b"ijklmnopqrst\x00"
            + b"mysql_native_password\x00"
        )
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.greetings += 1
            conn.sendall(struct.pack("<I", len(payload))[:3] + b"\x00" + payload)
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_a_server_without_tls_fails_at_once_instead_of_retrying() -> None:
    server = _ServerWithoutTLS()
    try:
        settings = parse_dsn(
            f"mysql://admin:{CANARY}@127.0.0.1:{server.port}/app", connect_deadline=30.0
        )
        started = time.monotonic()
        with pytest.raises(ConnectionFailed) as caught:
            connect(settings)
        assert time.monotonic() - started < 5
        assert server.greetings == 1
    finally:
        server.close()
    message = str(caught.value)
    assert "does not offer TLS" in message and "Cx7" not in message


def test_insecure_no_tls_against_a_tls_only_server_says_tls_is_required(
    mariadb: MariaDBServer, database: str
) -> None:
    with pytest.raises(ConnectionFailed) as caught:
        connect(settings_for(mariadb, database, tls=False, connect_deadline=30.0))
    message = str(caught.value)
    assert "requires TLS" in message and "--insecure-no-tls" in message
    assert "access denied" not in message.lower()
    assert mariadb.admin_password not in message
