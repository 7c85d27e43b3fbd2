"""Errors raised by the migration engine. `str(error)` is one readable, secret-free message."""

from __future__ import annotations


class MigrationError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigurationError(MigrationError):
    """Bad migration files (names, duplicates, encoding, unsplittable SQL): lists ALL problems."""

    def __init__(self, problems: list[str], heading: str = "migration files are not usable"):
        self.problems = list(problems)
        super().__init__(heading + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class ValidationError(MigrationError):
    """Applied history and files disagree (changed/missing file, out of order, ...)."""

    def __init__(self, problems: list[str], heading: str = "validation failed"):
        self.problems = list(problems)
        super().__init__(heading + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class InterruptedMigrationError(ValidationError):
    """A previous run died while a statement was in flight; `repair` resolves it."""


class LockTimeoutError(MigrationError):
    """Another migrator held the database's named lock for longer than the bounded wait."""


class ConnectionFailed(MigrationError):
    """The server could not be reached (or TLS could not be verified) before the deadline."""


class AuthenticationFailed(ConnectionFailed):
    """The server rejected the credentials (MySQL error 1045)."""


class StatementFailed(MigrationError):
    """A statement of a migration failed; names file, statement number, line and server error."""

    def __init__(
        self,
        script: str,
        statement_number: int,
        line: int,
        error_code: int,
        error_message: str,
        note: str = "",
        file: str | None = None,
    ):
        self.script = script
        self.statement_number = statement_number
        self.line = line
        self.file = file  # the sourced file the statement is in; None: the migration's own
        self.error_code = error_code
        self.error_message = error_message
        where = f"{file} line {line}" if file else f"line {line}"
        reason = f"server error {error_code}: {error_message}" if error_code else error_message
        message = f"{script}: statement {statement_number} ({where}) failed: {reason}"
        if note:
            message += f" ({note})"
        super().__init__(message)


class SecretError(MigrationError):
    """The database secret is missing, unreadable or malformed; names the ARN, never the value."""
