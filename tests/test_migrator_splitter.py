"""The splitter follows the mysql client: no server needed."""

from __future__ import annotations

import pytest

from migrator.errors import ConfigurationError
from migrator.splitter import split_statements


def sqls(text: str) -> list[str]:
    return [s.sql for s in split_statements(text)]


def test_plain_statements_with_lines() -> None:
    text = "CREATE TABLE a (x INT);\n\nINSERT INTO a VALUES (1);\nSELECT 1"
    stmts = split_statements(text)
    assert [s.sql for s in stmts] == [
        "CREATE TABLE a (x INT)",
        "INSERT INTO a VALUES (1)",
        "SELECT 1",
    ]
    assert [s.line for s in stmts] == [1, 3, 4]


def test_delimiters_inside_strings_names_and_comments_do_not_split() -> None:
    text = (
        "INSERT INTO t VALUES ('a;b', \"c;d\", 'it''s;', 'esc\\';x');\n"
        "SELECT `weird;name` FROM t; -- trailing; comment\n"
        "# hash; comment\n"
        "SELECT /* inline; */ 2;\n"
        "/* multi\n ; line\n*/ SELECT 3;"
    )
    stmts = split_statements(text)
    assert [s.sql for s in stmts] == [
        "INSERT INTO t VALUES ('a;b', \"c;d\", 'it''s;', 'esc\\';x')",
        "SELECT `weird;name` FROM t",
        "SELECT  2",  # the client keeps the blanks around a comment, one for the comment
        "SELECT 3",
    ]
    assert [s.line for s in stmts] == [1, 2, 4, 7]


def test_double_dash_without_space_is_not_a_comment() -> None:
    assert sqls("SELECT 1--1;\nSELECT 2 -- c\n;") == ["SELECT 1--1", "SELECT 2"]


def test_versioned_comments_and_hints_are_kept() -> None:
    text = "/*!40101 SET NAMES utf8mb4 */;\nSELECT /*+ MAX_EXECUTION_TIME(10) */ 1;"
    assert sqls(text) == ["/*!40101 SET NAMES utf8mb4 */", "SELECT /*+ MAX_EXECUTION_TIME(10) */ 1"]


@pytest.mark.parametrize("command", ["DELIMITER", "delimiter", "Delimiter"])
@pytest.mark.parametrize("delimiter", ["//", "$$", ";;", "GO"])
def test_delimiter_any_case_any_string_keeps_begin_end_bodies(command: str, delimiter: str) -> None:
    text = (
        "CREATE TABLE t (x INT);\n"
        f"{command} {delimiter}\n"
        "CREATE PROCEDURE p()\n"
        "BEGIN\n"
        "  INSERT INTO t VALUES (1);\n"
        "  SELECT ';' ;\n"
        f"END{delimiter}\n"
        "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW\n"
        f"BEGIN SET NEW.x = NEW.x + 1; END {delimiter}\n"
        f"{command} ;\n"
        "SELECT 1;"
    )
    stmts = split_statements(text)
    assert [s.line for s in stmts] == [1, 3, 8, 11]
    assert stmts[1].sql == (
        "CREATE PROCEDURE p()\nBEGIN\n  INSERT INTO t VALUES (1);\n  SELECT ';' ;\nEND"
    )
    assert stmts[2].sql.endswith("BEGIN SET NEW.x = NEW.x + 1; END")
    assert stmts[3].sql == "SELECT 1"


def test_a_delimiter_line_inside_a_pending_statement_is_part_of_it_like_the_client() -> None:
    # mariadb 10.11 reads DELIMITER as a command only when no statement is pending; it adds
    # no newline after such a line (the server then rejects the statement, as here).
    assert sqls("SELECT 1\nDELIMITER $$\nSELECT 2$$") == ["SELECT 1\nDELIMITER $$SELECT 2$$"]


def test_delimiter_word_inside_a_statement_is_not_a_command() -> None:
    assert sqls("SELECT 'x'\n  , 1 AS delimiter_col;") == ["SELECT 'x'\n  , 1 AS delimiter_col"]


def test_crlf_line_endings_split_and_number_the_same() -> None:
    lf = "CREATE TABLE a (x INT);\nDELIMITER //\nSELECT 1//\n"
    crlf = lf.replace("\n", "\r\n")
    assert split_statements(lf) == split_statements(crlf)


def test_statement_checksums_ignore_comments_but_not_code() -> None:
    a = split_statements("-- one\nSELECT 1;")[0]
    b = split_statements("# two\nSELECT 1;")[0]
    c = split_statements("SELECT 2;")[0]
    assert a.checksum == b.checksum != c.checksum


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("SELECT 1;\nSELECT 'open;\n", 2, "unterminated string"),
        ("SELECT 1;\n\n/* never closed\n", 3, "unterminated /* comment"),
        ("SELECT `x;\n", 1, "unterminated quoted name"),
        ("DELIMITER\nSELECT 1;", 1, "DELIMITER must be followed"),
    ],
)
def test_unsplittable_scripts_name_the_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        split_statements(text)
    assert f"line {line}: {problem}" in str(caught.value)


def test_comment_only_script_has_no_statements() -> None:
    assert split_statements("-- nothing\n/* here */\n# at all\n") == []


def test_several_statements_per_line_and_blank_pieces() -> None:
    stmts = split_statements("SELECT 1; SELECT 2;SELECT 3\n  ;\n;;\n  SELECT 4 ;  \n")
    assert [(s.sql, s.line) for s in stmts] == [
        ("SELECT 1", 1),
        ("SELECT 2", 1),
        ("SELECT 3", 1),
        ("SELECT 4", 4),
    ]
