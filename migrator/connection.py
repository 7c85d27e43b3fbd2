"""Connect to MySQL/MariaDB with verified TLS, retrying with backoff until a deadline."""

from __future__ import annotations

import dataclasses
import logging
import re
import ssl
import time
import urllib.parse
from dataclasses import dataclass

import pymysql
from pymysql.constants import CLIENT

from migrator.errors import AuthenticationFailed, ConfigurationError, ConnectionFailed

log = logging.getLogger("migrator")

# Errors that will not go away by retrying: wrong password, unknown database, no access,
# insecure transport refused (MySQL), TLS required but not offered by the server.
ER_ACCESS_DENIED = 1045
ER_SECURE_TRANSPORT_REQUIRED = 3159
CR_SSL_CONNECTION_ERROR = 2026
PERMANENT_ERRORS = {1044, 1045, 1049, 1698, 3159, 2026}


@dataclass(frozen=True)
class ConnectionSettings:
    host: str
    port: int
    user: str
    password: str = dataclasses.field(repr=False)  # never in repr/logs
    database: str = ""
    ca_bundle: str | None = None  # path to PEM CA bundle; None = system trust store
    tls: bool = True  # False only via the explicit, warned opt-out
    connect_deadline: float = 300.0  # seconds of retry-with-backoff before ConnectionFailed
    connect_timeout: float = 10.0  # per attempt

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


_SCHEMES = ("mysql", "mariadb")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
DSN_SHAPE = "mysql://user:password@host:port/database"


@dataclass(frozen=True)
class _DsnParts:
    scheme: str
    user: str
    password: str | None
    host: str
    port: str
    database: str
    query: str


def _split_dsn(dsn: str) -> _DsnParts:
    """Split without decoding. The password may hold any character (`/ # ? @ [ ] :`, as the
    stack's generated ones do): the user information runs to the LAST `@`."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        scheme, rest = "", dsn
    userinfo, at, location = rest.rpartition("@")
    if not at:
        userinfo, location = "", rest
    user, colon, password = userinfo.partition(":")
    hostport, _, tail = location.partition("/")
    database, _, query = tail.partition("?")
    if hostport.startswith("["):
        host, _, after = hostport.partition("]")
        host += "]"
        port = after[1:] if after.startswith(":") else after
    else:
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    return _DsnParts(scheme, user, password if colon else None, host, port, database, query)


def _shown(parts: _DsnParts) -> str:
    """The DSN as it may be printed: the password never, and nothing that does not look like
    what it should be (a malformed DSN may have its password where a host was expected)."""
    scheme = parts.scheme if parts.scheme.lower() in _SCHEMES else "mysql"
    user = urllib.parse.unquote(parts.user) if re.fullmatch(r"[\w.%$-]*", parts.user) else "?"
    host = parts.host if _HOST.fullmatch(parts.host) else "?"
    port = f":{parts.port}" if parts.port.isdigit() else (":?" if parts.port else "")
    database = parts.database if re.fullmatch(r"[\w$%-]*", parts.database) else "?"
    secret = ":***" if parts.password is not None else ""
    return f"{scheme}://{user}{secret}@{host}{port}/{database}"


def parse_dsn(dsn: str, **overrides: object) -> ConnectionSettings:
    """`mysql://user:pass@host:port/db` -> ConnectionSettings. The user and password may be
    %-encoded (write a literal % as %25); any other character may appear as is. Errors
    show the DSN masked, never the password."""
    parts = _split_dsn(dsn)
    shown = _shown(parts)
    problems: list[str] = []
    if not parts.scheme:
        problems.append(f"it does not start with mysql:// (expected {DSN_SHAPE})")
    elif parts.scheme.lower() not in _SCHEMES:
        name = parts.scheme if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,15}", parts.scheme) else "?"
        problems.append(f"scheme {name}:// is not mysql:// or mariadb:// (expected {DSN_SHAPE})")
    if not _HOST.fullmatch(parts.host):
        problems.append(f"the host is missing or not a host name (expected {DSN_SHAPE})")
    if parts.port and not parts.port.isdigit():
        problems.append("the port is not a number")
    if not parts.database or "/" in parts.database:
        problems.append("the database name (path) is missing")
    if parts.query:
        problems.append("options after '?' are not read: give TLS and timeouts as command options")
    if problems:
        raise ConfigurationError([f"DSN {shown}: {p}" for p in problems], "bad DSN")
    fields: dict[str, object] = {
        "host": parts.host.strip("[]"),
        "port": int(parts.port or 3306),
        "user": urllib.parse.unquote(parts.user),
        "password": urllib.parse.unquote(parts.password or ""),
        "database": urllib.parse.unquote(parts.database),
    }
    fields.update(overrides)
    return ConnectionSettings(**fields)  # type: ignore[arg-type]


def dsn_has_password(dsn: str) -> bool:
    return _split_dsn(dsn).password is not None


def mask_dsn(dsn: str) -> str:
    """The DSN with its password replaced by *** (and any part that looks wrong by ?)."""
    return _shown(_split_dsn(dsn))


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Certificate AND host name verified, against `ca_bundle` or the system trust store.

    Built here rather than through pymysql's ssl_* keywords: given no CA file, pymysql turns
    host name checking off, which would accept any publicly trusted certificate.
    """
    context = ssl.create_default_context(cafile=ca_bundle)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _attempt(
    settings: ConnectionSettings,
    context: ssl.SSLContext | None,
    multi_statements: bool,
    session_track: bool = False,
) -> pymysql.connections.Connection:
    options: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "user": settings.user,
        "password": settings.password,
        "database": settings.database or None,
        "autocommit": True,
        "charset": "utf8mb4",
        "connect_timeout": settings.connect_timeout,
    }
    flags = (CLIENT.MULTI_STATEMENTS if multi_statements else 0) | (
        CLIENT.SESSION_TRACK if session_track else 0
    )
    if flags:
        options["client_flag"] = flags
    if context is not None:
        options["ssl"] = context
    else:
        # Without this pymysql silently "prefers" TLS; the opt-out means no TLS at all.
        options["ssl_disabled"] = True
    return pymysql.connect(**options)  # type: ignore[arg-type]


def _describe(exc: BaseException) -> str:
    original = getattr(exc, "original_exception", None)
    if isinstance(original, ssl.SSLError):
        return f"TLS: {original}"
    if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        return f"error {exc.args[0]}: {exc.args[1]}"
    return str(exc) or type(exc).__name__


def _accepts_tls_login(settings: ConnectionSettings) -> bool:
    """Whether a login refused without TLS is accepted over verified TLS: MariaDB refuses a
    plaintext login to a TLS-only server (or account) as a plain "access denied"."""
    try:
        probe = _attempt(settings, tls_context(settings.ca_bundle), False)
    except (pymysql.err.MySQLError, OSError):
        return False
    probe.close()
    return True


def connect(
    settings: ConnectionSettings, *, multi_statements: bool = False, session_track: bool = False
) -> pymysql.connections.Connection:
    """A connection (autocommit on, utf8mb4) or ConnectionFailed/AuthenticationFailed.

    `multi_statements` lets one packet carry several statements (the mysql client's default);
    the engine uses it to send each history write with the statement it announces.
    `session_track` asks the server to flag, in each OK packet, statements that changed
    session state (see wire.SESSION_STATE_CHANGED)."""
    context = None
    if settings.tls:
        # Built once for every attempt. A missing, unreadable or non-PEM bundle (ssl.SSLError
        # is an OSError) is a ConnectionFailed naming the file, before any attempt.
        try:
            context = tls_context(settings.ca_bundle)
        except OSError as exc:
            raise ConnectionFailed(
                f"cannot read CA bundle {settings.ca_bundle or '(system trust store)'}: "
                f"{exc.strerror or exc}"
            ) from None
    else:
        log.warning(
            "TLS is OFF for %s: credentials and data travel in clear text "
            "(explicit opt-out, local servers only)",
            settings.address,
        )
    deadline = time.monotonic() + settings.connect_deadline
    delay = 0.25
    attempts = 0
    while True:
        attempts += 1
        try:
            return _attempt(settings, context, multi_statements, session_track)
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args else 0
            reason = _describe(exc)
            if code == CR_SSL_CONNECTION_ERROR and context is not None:
                raise ConnectionFailed(
                    f"cannot connect to {settings.address}: the server does not offer TLS, and "
                    "the connection is verified TLS by default (for a local server without TLS "
                    "only: --insecure-no-tls)"
                ) from None
            if code == ER_SECURE_TRANSPORT_REQUIRED or (
                code == ER_ACCESS_DENIED and context is None and _accepts_tls_login(settings)
            ):
                raise ConnectionFailed(
                    f"cannot connect to {settings.address} as {settings.user!r}: the server "
                    "requires TLS (it refused the login without TLS"
                    + (
                        ")"
                        if code == ER_SECURE_TRANSPORT_REQUIRED
                        else " and accepted the same login over verified TLS)"
                    )
                    + ": drop --insecure-no-tls"
                ) from None
            if code == ER_ACCESS_DENIED:
                raise AuthenticationFailed(
                    f"cannot log in to {settings.address} as {settings.user!r}: "
                    "access denied (wrong user name or password)"
                ) from None
            if code in PERMANENT_ERRORS or isinstance(
                getattr(exc, "original_exception", None), ssl.SSLError
            ):
                raise ConnectionFailed(
                    f"cannot connect to {settings.address} as {settings.user!r}: {reason}"
                ) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionFailed(
                    f"cannot connect to {settings.address} after {attempts} attempt(s) over "
                    f"{settings.connect_deadline:g}s; last error: {reason}"
                ) from None
            log.info(
                "connect to %s failed (%s); retrying in %.1fs", settings.address, reason, delay
            )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 10.0)
