"""Migrations that would become pending: new or changed files in the migrations folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from migrator.discovery import load_migrations, parse_name, version_key
from migrator.errors import ConfigurationError
from migrator.masking import mask_passwords
from migrator.splitter import split_statements
from plandiff.diff import Flag
from plandiff.rules import destructive_operations

FIRST_LINE_WIDTH = 100


@dataclass(frozen=True)
class StatementSummary:
    number: int  # 1-based position in its file
    line: int  # 1-based line where it starts
    first_line: str  # masked and shortened
    destructive: tuple[str, ...] = ()


@dataclass(frozen=True)
class PendingMigration:
    script: str
    status: str  # "new" | "changed"
    statements: tuple[StatementSummary, ...]


@dataclass
class MigrationDiff:
    location: str
    pending: list[PendingMigration] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.pending or self.removed or self.flags)


def first_line(sql: str) -> str:
    # Masked as a whole first: a password clause may start on the first line and end later.
    masked = mask_passwords(sql)
    line = next((ln.strip() for ln in masked.strip().splitlines() if ln.strip()), "")
    if len(line) > FIRST_LINE_WIDTH:
        line = line[: FIRST_LINE_WIDTH - 1] + "…"
    return line


def _read_sql_files(directory: Path) -> dict[str, str]:
    if not directory.is_dir():
        return {}
    files = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix == ".sql" and not path.name.startswith("."):
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", errors="replace")
            files[path.name] = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return files


def _summarise(text: str) -> tuple[StatementSummary, ...]:
    return tuple(
        StatementSummary(
            number=number,
            line=statement.line,
            first_line=first_line(statement.sql),
            destructive=tuple(destructive_operations(statement.sql)),
        )
        for number, statement in enumerate(split_statements(text), start=1)
    )


def _versioned_key(script: str) -> tuple[int, ...] | None:
    parsed = parse_name(script)
    if parsed is None or parsed[1] is None:
        return None
    return version_key(parsed[1])


def diff_migrations(
    base_dir: Path, head_dir: Path, location: str = "schema", base_location: str | None = None
) -> MigrationDiff:
    """Compare `<base_dir>/<base_location>` with `<head_dir>/<location>` (line endings
    ignored); `base_location` defaults to `location`."""
    base = _read_sql_files(base_dir / (base_location or location))
    head = _read_sql_files(head_dir / location)
    result = MigrationDiff(location=location)
    if (head_dir / location).is_dir():
        try:
            load_migrations(head_dir / location)
        except ConfigurationError as error:
            result.flags.append(Flag("migrations-invalid", location, str(error)))
    newest_released = max(
        (key for key in map(_versioned_key, base) if key is not None), default=None
    )
    for script in sorted(head):
        if base.get(script) == head[script]:
            continue
        status = "changed" if script in base else "new"
        pending = PendingMigration(script, status, _summarise(head[script]))
        result.pending.append(pending)
        for statement in pending.statements:
            for operation in statement.destructive:
                result.flags.append(
                    Flag(
                        "destructive-migration",
                        script,
                        f"{script} statement {statement.number} (line {statement.line}): "
                        f"{operation}",
                    )
                )
        key = _versioned_key(script)
        if status == "changed" and key is not None:
            result.flags.append(
                Flag(
                    "migration-edited",
                    script,
                    f"{script} was edited after it was merged: databases that applied it fail "
                    "validation (checksum mismatch); add a new versioned migration instead",
                )
            )
        if status == "new" and key is not None and newest_released and key < newest_released:
            result.flags.append(
                Flag(
                    "migration-out-of-order",
                    script,
                    f"{script} is older than the newest merged version: the engine refuses it "
                    "unless appdb:migrationOutOfOrder is true",
                )
            )
    for script in sorted(set(base) - set(head)):
        result.removed.append(script)
        if _versioned_key(script) is not None:
            result.flags.append(
                Flag(
                    "migration-removed",
                    script,
                    f"{script} was removed: databases that applied it fail validation "
                    "(applied migration missing)",
                )
            )
    return result
