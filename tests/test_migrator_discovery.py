"""Discovery and ordering of migration files: no server needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from migrator_support import ROOT, write_migrations

from migrator.discovery import load_migrations
from migrator.errors import ConfigurationError


def test_versions_order_numerically_part_by_part_then_repeatables(tmp_path: Path) -> None:
    names = ["V2__b.sql", "V1.10__d.sql", "V1.9__c.sql", "V1_2__a.sql", "R__z.sql", "R__a.sql"]
    write_migrations(tmp_path, dict.fromkeys(names, "SELECT 1;"))
    (tmp_path / "README.md").write_text("ignored")
    migrations = load_migrations(tmp_path)
    assert [m.script for m in migrations] == [
        "V1_2__a.sql",
        "V1.9__c.sql",
        "V1.10__d.sql",
        "V2__b.sql",
        "R__a.sql",
        "R__z.sql",
    ]
    first = migrations.migrations[0]
    assert (first.kind, first.version, first.description) == ("versioned", "1.2", "a")
    assert migrations.migrations[-1].version is None


def test_all_problems_are_listed_together(tmp_path: Path) -> None:
    write_migrations(
        tmp_path,
        {
            "V1__ok.sql": "SELECT 1;",
            "V1.0__same_version.sql": "SELECT 1;",
            "v2__lowercase.sql": "SELECT 1;",
            "V3_missing_separator.sql": "SELECT 1;",
            "V4__.sql": "SELECT 1;",
        },
    )
    (tmp_path / "V5__latin1.sql").write_bytes(b"SELECT 'caf\xe9';")  # bytes are fine
    with pytest.raises(ConfigurationError) as caught:
        load_migrations(tmp_path)
    message = str(caught.value)
    assert len(caught.value.problems) == 4
    for fragment in [
        "V1__ok.sql: duplicate version 1 (also used by V1.0__same_version.sql)",
        "v2__lowercase.sql: name does not match",
        "V3_missing_separator.sql: name does not match",
        "V4__.sql: the description after '__' is empty",
    ]:
        assert fragment in message


def test_checksum_ignores_line_endings_but_not_content(tmp_path: Path) -> None:
    (tmp_path / "lf").mkdir()
    (tmp_path / "crlf").mkdir()
    (tmp_path / "lf" / "V1__a.sql").write_bytes(b"CREATE TABLE a (x INT);\nSELECT 1;\n")
    (tmp_path / "crlf" / "V1__a.sql").write_bytes(b"CREATE TABLE a (x INT);\r\nSELECT 1;\r\n")
    lf, crlf = load_migrations(tmp_path / "lf"), load_migrations(tmp_path / "crlf")
    assert lf.checksums() == crlf.checksums()
    (tmp_path / "lf" / "V1__a.sql").write_bytes(b"CREATE TABLE a (x BIGINT);\nSELECT 1;\n")
    assert load_migrations(tmp_path / "lf").checksums() != crlf.checksums()


def test_missing_location_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a directory"):
        load_migrations(tmp_path / "nope")


def test_project_schema_loads_and_splits() -> None:
    migrations = load_migrations(ROOT / "schema")
    assert [m.version for m in migrations] == ["1", "2", "3"]
    routines = migrations.migrations[2].statements()
    assert [s.sql.split("(")[0] for s in routines] == [
        "CREATE PROCEDURE create_user_session",
        "CREATE FUNCTION validate_user_session",
    ]
