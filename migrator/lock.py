"""One migrator at a time per database: a MySQL named lock (GET_LOCK) with a bounded wait.

Named locks belong to the connection: if the process dies (even kill -9), the server
releases the lock when it notices the connection is gone.
"""

from __future__ import annotations

import hashlib

import pymysql

from migrator.errors import LockTimeoutError, MigrationError

MAX_LOCK_NAME = 64  # MySQL 8 limit


def default_lock_name(database: str) -> str:
    name = f"appdb_migrator.{database}"
    if len(name) > MAX_LOCK_NAME:
        name = "appdb_migrator." + hashlib.sha256(database.encode()).hexdigest()[:40]
    return name


def describe_holder(conn: pymysql.connections.Connection, name: str) -> str:
    """'connection 42 (user@host, running 12s, ...)' for the current holder of `name`."""
    with conn.cursor() as cur:
        cur.execute("SELECT IS_USED_LOCK(%s)", (name,))
        row = cur.fetchone()
        holder_id = row[0] if row else None
        if holder_id is None:
            return "nobody now (it was released as the wait ended)"
        cur.execute(
            "SELECT USER, HOST, TIME, COMMAND, STATE FROM information_schema.PROCESSLIST "
            "WHERE ID = %s",
            (holder_id,),
        )
        info = cur.fetchone()
    if info is None:
        return f"connection {holder_id} (user/host not visible: needs the PROCESS privilege)"
    user, host, seconds, command, state = info
    detail = f"{command}" + (f", {state}" if state else "")
    return f"connection {holder_id} ({user}@{host}, for {seconds}s, {detail})"


def acquire(conn: pymysql.connections.Connection, name: str, wait_seconds: float) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, %s)", (name, wait_seconds))
        row = cur.fetchone()
    got = row[0] if row else None
    if got == 1:
        return
    if got is None:
        raise MigrationError(f"GET_LOCK({name!r}) returned an error (NULL)")
    holder = describe_holder(conn, name)
    raise LockTimeoutError(
        f"another migration holds the lock {name!r}: {holder}; gave up after waiting "
        f"{wait_seconds:g}s"
    )


def release(conn: pymysql.connections.Connection, name: str) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT RELEASE_LOCK(%s)", (name,))
        cur.fetchall()


def work_lock_name(name: str) -> str:
    """The lock the session that runs the statements holds: `name` belongs to the run's
    control connection, which resets its working session between migrations (a reset frees
    the session's named locks on MySQL and MariaDB alike)."""
    work = f"{name}.work"
    if len(work) > MAX_LOCK_NAME:
        work = "appdb_migrator.w." + hashlib.sha256(name.encode()).hexdigest()[:40]
    return work


def wait_for_work(conn: pymysql.connections.Connection, name: str, wait_seconds: float) -> None:
    """Wait until no session holds the work lock `name`, then leave it free: a previous run's
    session may still be finishing the statements it was sent when its migrator died (the
    server runs them to the end), and history is only final once it has."""
    with conn.cursor() as cur:
        # One statement: taken (after any wait) and given back at once.
        cur.execute("SELECT GET_LOCK(%s, %s) AND RELEASE_LOCK(%s)", (name, wait_seconds, name))
        row = cur.fetchone()
        if row and row[0] == 1:
            return
    holder = describe_holder(conn, name)
    raise LockTimeoutError(
        f"the session of an earlier run is still applying statements it was sent (lock "
        f"{name!r}): {holder}; gave up after waiting {wait_seconds:g}s. It finishes what it "
        f"was sent, then frees the lock; to stop it, KILL that session"
    )
