"""The seed's database integration tests, ported to the schema in `schema/` on a real MariaDB.

The database is migrated once for this module by the engine (as `pulumi up` does through the
dynamic resource); each test cleans up the rows it made. "Uses its index" is checked with
EXPLAIN, not with a stopwatch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeAlias, cast

import pymysql
import pytest
from migrator_support import one_row, settings_for
from pymysql.cursors import DictCursor

from migrator.discovery import load_migrations
from migrator.engine import Migrator
from standins.mariadb import MariaDBServer

SCHEMA = Path(__file__).resolve().parent.parent / "schema"
TEST_EMAIL_PATTERN = "%@integration.test"

# The `db` fixture's connections: their cursors are DictCursors (rows are dicts). A string:
# pymysql's Connection is generic in its type stubs only.
DictConnection: TypeAlias = "pymysql.connections.Connection[DictCursor]"


@pytest.fixture(scope="module")
def migrated(mariadb: MariaDBServer) -> str:
    """A database brought to the version in schema/ by the engine."""
    database = mariadb.create_database("integration")
    settings = settings_for(mariadb, database, connect_deadline=10)
    result = Migrator(settings, load_migrations(SCHEMA)).migrate()
    assert result.applied, "schema/ applied nothing"
    return database


@pytest.fixture
def db(mariadb: MariaDBServer, migrated: str) -> Iterator[DictConnection]:
    """A verified-TLS connection as the master user, explicit transactions (autocommit off)."""
    conn = cast(
        DictConnection, mariadb.connect(database=migrated, autocommit=False, cursorclass=DictCursor)
    )
    try:
        yield conn
    finally:
        conn.rollback()
        with conn.cursor() as cur:
            # user_sessions rows go with their users (ON DELETE CASCADE).
            cur.execute("DELETE FROM users WHERE email LIKE %s", (TEST_EMAIL_PATTERN,))
        conn.commit()
        conn.close()


def insert_user(conn: DictConnection, email: str, name: str) -> int:
    with conn.cursor() as cur:
        cur.execute("INSERT INTO users (email, name) VALUES (%s, %s)", (email, name))
        user_id = cur.lastrowid
    conn.commit()
    return int(user_id)


def test_user_creation_and_retrieval_with_json_preferences(
    db: DictConnection,
) -> None:
    preferences = {"theme": "dark", "notifications": True, "language": "en"}
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO users (email, name, preferences) VALUES (%s, %s, %s)",
            ("user@integration.test", "Integration Test User", json.dumps(preferences)),
        )
        user_id = cur.lastrowid
        db.commit()
        cur.execute("SELECT * FROM users WHERE id = %s", (user_id,))
        user = cur.fetchone()
        # The JSON is queryable server-side too, not just stored text.
        cur.execute(
            "SELECT JSON_UNQUOTE(JSON_EXTRACT(preferences, '$.language')) AS language "
            "FROM users WHERE id = %s",
            (user_id,),
        )
        language = one_row(cur)["language"]

    assert user is not None
    assert user["email"] == "user@integration.test"
    assert user["name"] == "Integration Test User"
    assert json.loads(user["preferences"]) == preferences
    assert isinstance(user["created_at"], datetime)
    assert isinstance(user["updated_at"], datetime)
    assert language == "en"


def test_updated_at_follows_updates(db: DictConnection) -> None:
    with db.cursor() as cur:
        cur.execute(
            "SELECT EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'users' AND COLUMN_NAME = 'updated_at'"
        )
        extra = one_row(cur)["EXTRA"].lower()
    # MySQL 8 reports "DEFAULT_GENERATED on update CURRENT_TIMESTAMP", MariaDB
    # "on update current_timestamp()": both contain the clause.
    assert "on update current_timestamp" in extra


def test_user_session_workflow_through_procedure_and_function(
    db: DictConnection,
) -> None:
    user_id = insert_user(db, "session@integration.test", "Session Test User")
    with db.cursor() as cur:
        cur.execute("CALL create_user_session(%s, @session_token)", (user_id,))
        cur.execute("SELECT @session_token AS session_token")
        token = one_row(cur)["session_token"]
        db.commit()
        assert token, "the procedure returned no token"

        cur.execute(
            "SELECT *, expires_at > NOW() AS in_future FROM user_sessions "
            "WHERE user_id = %s AND session_token = %s",
            (user_id, token),
        )
        session = cur.fetchone()
        assert session is not None
        assert session["user_id"] == user_id
        assert session["session_token"] == token
        assert session["in_future"] == 1  # compared by the server, in the server's time zone

        cur.execute("SELECT validate_user_session(%s) AS is_valid", (token,))
        assert one_row(cur)["is_valid"] == 1
        cur.execute("SELECT validate_user_session(%s) AS is_valid", ("invalid_token",))
        assert one_row(cur)["is_valid"] == 0

        # An expired session is not valid.
        cur.execute(
            "UPDATE user_sessions SET expires_at = NOW() - INTERVAL 1 MINUTE "
            "WHERE session_token = %s",
            (token,),
        )
        db.commit()
        cur.execute("SELECT validate_user_session(%s) AS is_valid", (token,))
        assert one_row(cur)["is_valid"] == 0


def test_each_session_gets_a_distinct_token(db: DictConnection) -> None:
    user_id = insert_user(db, "tokens@integration.test", "Token Test User")
    tokens = set()
    with db.cursor() as cur:
        for _ in range(3):
            cur.execute("CALL create_user_session(%s, @session_token)", (user_id,))
            cur.execute("SELECT @session_token AS session_token")
            tokens.add(one_row(cur)["session_token"])
        db.commit()
        cur.execute("SELECT COUNT(*) AS n FROM user_sessions WHERE user_id = %s", (user_id,))
        assert one_row(cur)["n"] == 3
    assert len(tokens) == 3


def test_unique_email_constraint(db: DictConnection) -> None:
    insert_user(db, "unique@integration.test", "Constraint Test User 1")
    with pytest.raises(pymysql.err.IntegrityError) as caught:
        insert_user(db, "unique@integration.test", "Constraint Test User 2")
    assert caught.value.args[0] == 1062  # ER_DUP_ENTRY


def test_deleting_a_user_deletes_their_sessions(db: DictConnection) -> None:
    user_id = insert_user(db, "cascade@integration.test", "Cascade Test User")
    with db.cursor() as cur:
        cur.execute("CALL create_user_session(%s, @session_token)", (user_id,))
        db.commit()
        cur.execute("DELETE FROM users WHERE id = %s", (user_id,))
        db.commit()
        cur.execute("SELECT COUNT(*) AS n FROM user_sessions WHERE user_id = %s", (user_id,))
        assert one_row(cur)["n"] == 0


def test_transaction_rollback(db: DictConnection) -> None:
    db.begin()
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO users (email, name) VALUES (%s, %s)",
            ("transaction@integration.test", "Transaction Test User"),
        )
        user_id = cur.lastrowid
        cur.execute(
            "INSERT INTO user_sessions (user_id, session_token, expires_at) VALUES (%s, %s, %s)",
            (user_id, "rollback_session_token", datetime.now() + timedelta(hours=1)),
        )
        # Visible inside the transaction...
        cur.execute("SELECT COUNT(*) AS n FROM users WHERE id = %s", (user_id,))
        assert one_row(cur)["n"] == 1
    db.rollback()

    with db.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) AS n FROM users WHERE email = %s", ("transaction@integration.test",)
        )
        assert one_row(cur)["n"] == 0
        cur.execute(
            "SELECT COUNT(*) AS n FROM user_sessions WHERE session_token = %s",
            ("rollback_session_token",),
        )
        assert one_row(cur)["n"] == 0


def test_email_lookup_uses_an_index_on_email(db: DictConnection) -> None:
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO users (email, name) VALUES (%s, %s)",
            [(f"perf_{i}@integration.test", f"Performance Test User {i}") for i in range(1000)],
        )
        db.commit()
        cur.execute("ANALYZE TABLE users")
        cur.fetchall()
        cur.execute(
            "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'users' AND COLUMN_NAME = 'email' AND SEQ_IN_INDEX = 1"
        )
        email_indexes = {row["INDEX_NAME"] for row in cur.fetchall()}
        assert "idx_users_email" in email_indexes

        cur.execute("EXPLAIN SELECT * FROM users WHERE email = %s", ("perf_500@integration.test",))
        plan = one_row(cur)
        assert plan["key"] in email_indexes, plan
        assert plan["type"] in ("const", "eq_ref", "ref"), plan  # not a full scan ("ALL")
        assert int(plan["rows"]) <= 1, plan

        cur.execute("SELECT * FROM users WHERE email = %s", ("perf_500@integration.test",))
        found = cur.fetchone()
        assert found is not None and found["name"] == "Performance Test User 500"
