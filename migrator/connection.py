"""Connect to MySQL/MariaDB with verified TLS, retrying with backoff until a deadline."""

from __future__ import annotations

import dataclasses
import logging
import ssl
import time
import urllib.parse
from dataclasses import dataclass

import pymysql
from pymysql.constants import CLIENT

from migrator.errors import AuthenticationFailed, ConfigurationError, ConnectionFailed

log = logging.getLogger("migrator")

# Errors that will not go away by retrying: wrong password, unknown database, no access.
ER_ACCESS_DENIED = 1045
PERMANENT_ERRORS = {1044, 1045, 1049, 1698, 3159}


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


def parse_dsn(dsn: str, **overrides: object) -> ConnectionSettings:
    """`mysql://user:pass@host:port/db` -> ConnectionSettings (user/pass may be %-encoded)."""
    parsed = urllib.parse.urlsplit(dsn)
    if parsed.scheme not in ("mysql", "mariadb") or not parsed.hostname:
        raise ConfigurationError(
            [f"DSN {mask_dsn(dsn)!r}: expected mysql://user:password@host:port/database"],
            "bad DSN",
        )
    database = parsed.path.lstrip("/")
    if not database or "/" in database:
        raise ConfigurationError(
            [f"DSN {mask_dsn(dsn)!r}: the database name (path) is missing"], "bad DSN"
        )
    try:
        port = parsed.port or 3306
    except ValueError:
        raise ConfigurationError(
            [f"DSN {mask_dsn(dsn)!r}: the port is not a number"], "bad DSN"
        ) from None
    fields: dict[str, object] = {
        "host": parsed.hostname,
        "port": port,
        "user": urllib.parse.unquote(parsed.username or ""),
        "password": urllib.parse.unquote(parsed.password or ""),
        "database": urllib.parse.unquote(database),
    }
    fields.update(overrides)
    return ConnectionSettings(**fields)  # type: ignore[arg-type]


def mask_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ***."""
    try:
        parsed = urllib.parse.urlsplit(dsn)
        if parsed.password is None:
            return dsn
        netloc = f"{parsed.username}:***@{parsed.hostname}"
        if parsed.port:
            netloc += f":{parsed.port}"
        return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))
    except ValueError:
        return "mysql://***"


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
    settings: ConnectionSettings, context: ssl.SSLContext | None, multi_statements: bool
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
    if multi_statements:
        options["client_flag"] = CLIENT.MULTI_STATEMENTS
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


def connect(
    settings: ConnectionSettings, *, multi_statements: bool = False
) -> pymysql.connections.Connection:
    """A connection (autocommit on, utf8mb4) or ConnectionFailed/AuthenticationFailed.

    `multi_statements` lets one packet carry several statements (the mysql client's default);
    the engine uses it to send each history write with the statement it announces."""
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
            return _attempt(settings, context, multi_statements)
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args else 0
            reason = _describe(exc)
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
