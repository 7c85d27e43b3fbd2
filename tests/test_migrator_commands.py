"""The `mariadb` client's own commands in migration files, and files that are not UTF-8:
applied as the client applies them, or refused before anything runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from migrator_support import (
    apply_with_client,
    migrator_for,
    query,
    run_cli,
    schema_snapshot,
    tables,
)

from migrator.discovery import load_migrations
from migrator.errors import ConfigurationError
from standins.mariadb import MariaDBServer


def _write(location: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        path = location / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return location


# -- 5. client commands -----------------------------------------------------------------------

COMMANDS = (
    b"use {other}\n"  # the client's `use`, no `;`
    b"CREATE TABLE t1 (a INT, s VARCHAR(10)) DEFAULT CHARSET=utf8mb4;\n"
    b"SELECT DATABASE()\\G\n"
    b"warnings\n"
    b"INSERT INTO t1 VALUES (1, 'x')\\g\n"
    b"nowarning\n"
    b"charset latin1\n"
    b"INSERT INTO t1 VALUES (2, '\xc3\xa9');\n"  # UTF-8 bytes read as latin1, as the client does
    b"charset utf8mb4\n"
    b"SELECT 1 \\c\n"  # cleared: never sent
    b"use {target};\n"
    b"CREATE TABLE back_home (a INT);\n"
    b"status\n"
    b"print\n"
    b"rehash\n"
    b"\\. parts/more.sql\n"
    b"exit\n"
    b"CREATE TABLE never (a INT);\n"  # after `exit`: the client stops reading the file
)


def test_client_commands_apply_as_the_client_applies_them(
    mariadb: MariaDBServer, tmp_path: Path
) -> None:
    results = {}
    for tool in ("client", "engine"):
        target, other = mariadb.create_database(tool), mariadb.create_database(tool + "_other")
        files = {
            "V1__commands.sql": COMMANDS.replace(b"{other}", other.encode()).replace(
                b"{target}", target.encode()
            ),
            "parts/more.sql": b"source parts/last.sql\nCREATE TABLE more (a INT);\n",
            "parts/last.sql": b"CREATE TABLE last (a INT);\nquit\nCREATE TABLE not_this (a INT);\n",
        }
        location = _write(tmp_path / tool, files)
        if tool == "client":
            apply_with_client(mariadb, target, location)
        else:
            assert migrator_for(mariadb, target, location).migrate().applied == ["V1__commands.sql"]
        results[tool] = (
            schema_snapshot(mariadb, target),
            schema_snapshot(mariadb, other),
            query(mariadb, other, "SELECT a, HEX(s) FROM t1 ORDER BY a"),
        )
    assert results["engine"] == results["client"]
    assert {"back_home", "more", "last"} <= {t[0] for t in results["engine"][0]["tables"]}


def test_client_commands_that_do_not_belong_in_a_migration_are_refused_before_anything_runs(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = _write(
        tmp_path,
        {
            "V1__fine.sql": b"CREATE TABLE fine (a INT);\n",
            "V2__shell.sql": (
                b"CREATE TABLE first (a INT);\n"
                b"system rm -rf /tmp/should-never-run\n"
                b"SELECT 1;\n"
                b"\\! echo nope\n"
                b"tee /tmp/out.txt\n"
                b"SELECT 2 \\x;\n"
                b"source parts/missing.sql\n"
            ),
        },
    )
    for action in ("validate", "plan", "migrate"):
        with pytest.raises(ConfigurationError) as caught:
            getattr(migrator_for(mariadb, database, location), action)()
        message = str(caught.value)
        assert "V2__shell.sql: line 2: client command `system` runs a program on the " in message
        assert "V2__shell.sql: line 4: client command `\\!`" in message
        assert "V2__shell.sql: line 5: client command `tee`" in message
        assert "V2__shell.sql: line 6: unknown client command `\\x`" in message
        assert "V2__shell.sql: line 7: cannot source parts/missing.sql" in message
    # Nothing ran, not even the migration before it.
    assert not {"fine", "first"} & tables(mariadb, database)
    common = ["--dsn", mariadb.dsn(database), "--ca-bundle", str(mariadb.ca_path)]
    plan = run_cli("plan", *common, "--locations", str(location))
    assert plan.returncode == 1 and "client command `system`" in plan.stderr


def test_plan_shows_what_the_client_commands_become(
    mariadb: MariaDBServer, database: str, tmp_path: Path
) -> None:
    location = _write(
        tmp_path,
        {
            "V1__cmds.sql": b"use other_db\nSELECT 1\\G\nsource parts/p.sql\n",
            "parts/p.sql": b"CREATE TABLE p (a INT);\n",
        },
    )
    common = ["--dsn", mariadb.dsn(database), "--ca-bundle", str(mariadb.ca_path)]
    plan = run_cli("plan", *common, "--locations", str(location))
    assert plan.returncode == 0, plan.stderr
    assert "-- [1] line 1 (client command `use other_db`)\nUSE `other_db`;" in plan.stdout
    assert "-- [2] line 2\nSELECT 1;" in plan.stdout
    assert "-- [3] parts/p.sql line 1\nCREATE TABLE p (a INT);" in plan.stdout


# -- 6. files that are not UTF-8 --------------------------------------------------------------


def test_a_latin1_file_is_sent_byte_for_byte_as_the_client_sends_it(
    mariadb: MariaDBServer, tmp_path: Path
) -> None:
    latin1 = (
        "SET NAMES latin1;\n"
        "CREATE TABLE words (w VARCHAR(20)) DEFAULT CHARSET=utf8mb4;\n"
        "INSERT INTO words VALUES ('café'), ('naïve'), ('Ærø');\n"
    ).encode("latin1")
    location = _write(tmp_path, {"V1__latin1.sql": latin1})
    client_db, engine_db = mariadb.create_database(), mariadb.create_database()
    apply_with_client(mariadb, client_db, location)
    migrator_for(mariadb, engine_db, location).migrate()
    words = "SELECT w, HEX(w) FROM words ORDER BY w"
    assert query(mariadb, engine_db, words) == query(mariadb, client_db, words)
    assert ("café", "636166C3A9") in query(mariadb, engine_db, words)
    # The checksum is over the bytes (line endings normalised), stable from run to run.
    assert load_migrations(location).checksums() == {
        "V1__latin1.sql": hashlib.sha256(latin1).hexdigest()
    }


def test_the_default_character_set_option_reads_files_as_the_clients_option_does(
    mariadb: MariaDBServer, tmp_path: Path
) -> None:
    # No SET NAMES in the file: what the bytes mean is the session's character set, given by
    # the client's --default-character-set and the engine's default_charset.
    raw = (
        "CREATE TABLE words (w VARCHAR(20)) DEFAULT CHARSET=utf8mb4;\n"
        "INSERT INTO words VALUES ('Ærø');\n"
    )
    location = _write(tmp_path, {"V1__plain.sql": raw.encode("latin1")})
    client_db, engine_db = mariadb.create_database(), mariadb.create_database()
    apply_with_client(mariadb, client_db, location, charset="latin1")
    migrator_for(mariadb, engine_db, location, default_charset="latin1").migrate()
    words = "SELECT HEX(w) FROM words"
    assert query(mariadb, engine_db, words) == query(mariadb, client_db, words) == [("C38672C3B8",)]


def test_checksums_of_utf8_files_are_unchanged(tmp_path: Path) -> None:
    # The checksum existing history holds: sha256 of the UTF-8 text, BOM dropped, CRLF -> LF.
    text = "-- é\r\nCREATE TABLE a (x INT);\r\n"
    location = _write(tmp_path, {"V1__a.sql": b"\xef\xbb\xbf" + text.encode()})
    expected = hashlib.sha256(text.replace("\r\n", "\n").encode()).hexdigest()
    assert load_migrations(location).checksums() == {"V1__a.sql": expected}
