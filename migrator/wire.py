"""The few protocol steps the engine takes below pymysql's cursor (pymysql is pinned in
requirements.txt; these use its packet reader and command writer).

- `send` one COM_QUERY carrying several statements, then `read_result` once per statement:
  each returns the server status flags of that statement's OK (or the EOF closing its result
  set). pymysql's cursor drops the status of result sets and builds result objects the
  engine does not need; with hundreds of thousands of statements that is most of the
  client's time.
- `reset` is COM_RESET_CONNECTION (MariaDB >= 10.2.4, MySQL >= 5.7.3): the session starts
  over (transaction rolled back, table and named locks released, temporary tables dropped,
  session and user variables and character set back to the defaults) without a new login.
  https://dev.mysql.com/doc/c-api/8.0/en/mysql-reset-connection.html (it releases GET_LOCK
  locks: the migration lock lives on another connection);
  https://mariadb.com/docs/connectors/mariadb-connector-c/api-functions/mysql_reset_connection
  (MariaDB 10.11 releases them too, checked; it keeps the current database). pymysql has no
  helper for it.
"""

from __future__ import annotations

import pymysql
from pymysql.constants import COMMAND

IN_TRANS = 0x0001
AUTOCOMMIT = 0x0002
MORE_RESULTS = 0x0008
# Set in an OK packet when the statement changed session state the server tracks: user or
# system variables, the current database, temporary tables, prepared statements (needs the
# CLIENT_SESSION_TRACK capability and session_track_state_change=ON, both servers:
# https://dev.mysql.com/doc/refman/8.4/en/session-state-tracking.html). LOCK TABLES is not
# tracked: the engine follows it from the statements.
SESSION_STATE_CHANGED = 0x4000
COM_RESET_CONNECTION = 0x1F


def send(conn: pymysql.connections.Connection, payload: bytes) -> None:
    conn._execute_command(COMMAND.COM_QUERY, payload)  # type: ignore[attr-defined]


def status(conn: pymysql.connections.Connection | None) -> int:
    """The server status flags after the last result read (0 without a connection)."""
    return int(getattr(conn, "server_status", 0) or 0)


def _lenenc_end(data: bytes, pos: int) -> int:
    first = data[pos]
    if first < 0xFB:
        return pos + 1
    return pos + {0xFC: 3, 0xFD: 4, 0xFE: 9}.get(first, 1)


def _read_payload(conn: pymysql.connections.Connection) -> bytes:
    """One protocol packet's payload, straight from the socket's buffer: the OK packets of
    hundreds of thousands of statements are most of what the engine reads."""
    rfile = conn._rfile  # type: ignore[attr-defined]
    try:
        header = rfile.read(4)
        length = header[0] | header[1] << 8 | header[2] << 16
        data = rfile.read(length)
    except (OSError, IndexError) as exc:
        conn._force_close()  # type: ignore[attr-defined]
        raise pymysql.err.OperationalError(
            2013, f"Lost connection to MySQL server during query ({exc})"
        ) from None
    if len(data) < length or header[3] != conn._next_seq_id:  # type: ignore[attr-defined]
        conn._force_close()  # type: ignore[attr-defined]
        raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
    conn._next_seq_id = (header[3] + 1) % 256  # type: ignore[attr-defined]
    if length == 0xFFFFFF:  # continued in the next packet (a packet of 16 MiB or more)
        data += _read_payload(conn)
    return data


def read_result(conn: pymysql.connections.Connection) -> int:
    """One statement's result, read to its end; returns its server status flags. A server
    error is raised as pymysql raises it (MySQLError with code and message)."""
    if conn._current_timeout != conn._read_timeout:  # type: ignore[attr-defined]
        conn._sock.settimeout(conn._read_timeout)  # type: ignore[attr-defined]
        conn._current_timeout = conn._read_timeout  # type: ignore[attr-defined]
    data = _read_payload(conn)
    if data[0] == 0xFF:
        pymysql.err.raise_mysql_exception(data)
    if data[0] == 0 and len(data) >= 7:  # OK: affected rows, insert id, status, warnings
        pos = _lenenc_end(data, _lenenc_end(data, 1))
        status = data[pos] | data[pos + 1] << 8
    else:  # a result set: column definitions, EOF, rows, EOF (its last packet has the status)
        while not conn._read_packet().is_eof_packet():
            pass
        while True:
            packet = conn._read_packet()
            if packet.is_eof_packet():
                data = packet._data  # type: ignore[attr-defined]
                status = data[3] | data[4] << 8
                break
    conn.server_status = status  # type: ignore[attr-defined]
    return status


def drain(conn: pymysql.connections.Connection) -> int:
    """Every result of a statement that may return several (a CALL); returns the last status."""
    status = read_result(conn)
    while status & MORE_RESULTS:
        status = read_result(conn)
    return status


def reset(conn: pymysql.connections.Connection) -> None:
    conn._execute_command(COM_RESET_CONNECTION, b"")  # type: ignore[attr-defined]
    conn._read_ok_packet()  # type: ignore[attr-defined]
