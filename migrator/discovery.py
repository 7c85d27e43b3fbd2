"""Find migration files and order them.

`V<version>__<description>.sql`: version is digits separated by `.` or `_` and compares
numerically part by part (1.9 < 1.10 < 2; trailing zero parts do not count, so 1 == 1.0).
`R__<description>.sql`: repeatable, re-applied whenever its checksum changes, after all
versioned migrations, in name order. Other `.sql` names are errors; non-`.sql` files and
dot-files are ignored. Every problem is collected and reported together.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from migrator.errors import ConfigurationError
from migrator.splitter import Statement, split_statements

VERSIONED = re.compile(r"V(?P<version>\d+(?:[._]\d+)*)__(?P<description>.*)\.sql")
REPEATABLE = re.compile(r"R__(?P<description>.*)\.sql")


def normalise_text(raw: bytes) -> str:
    """File bytes -> text with line endings normalised to LF (raises UnicodeDecodeError)."""
    text = raw.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def checksum_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def version_key(version: str) -> tuple[int, ...]:
    """Numeric sort key; trailing zero parts dropped so that 1, 1.0 and 1_0 are equal."""
    parts = [int(p) for p in re.split(r"[._]", version)]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@dataclass(frozen=True)
class Migration:
    script: str  # file name, e.g. "V1__create_users.sql" / "R__views.sql"
    kind: str  # "versioned" | "repeatable"
    version: str | None  # "1.10" (None for repeatable)
    description: str  # "create users"
    checksum: str  # hex sha256 of the file text with CRLF/CR normalised to LF
    path: Path
    text: str | None = field(default=None, repr=False, compare=False)

    def statements(self) -> list[Statement]:
        text = self.text
        if text is None:
            text = normalise_text(self.path.read_bytes())
        return split_statements(text)

    @functools.cached_property
    def version_key(self) -> tuple[int, ...]:
        return version_key(self.version) if self.version is not None else ()


class MigrationSet:
    """Ordered migrations: versioned by numeric version, then repeatables by name."""

    def __init__(self, migrations: list[Migration]):
        versioned = sorted(
            (m for m in migrations if m.kind == "versioned"), key=lambda m: m.version_key
        )
        repeatable = sorted(
            (m for m in migrations if m.kind == "repeatable"), key=lambda m: m.script
        )
        self.migrations: list[Migration] = versioned + repeatable
        self.by_script: dict[str, Migration] = {m.script: m for m in self.migrations}

    def checksums(self) -> dict[str, str]:
        """script -> checksum (the dynamic resource's input map)."""
        return {m.script: m.checksum for m in self.migrations}

    def __iter__(self) -> Iterator[Migration]:
        return iter(self.migrations)

    def __len__(self) -> int:
        return len(self.migrations)


def parse_name(name: str) -> tuple[str, str | None, str] | None:
    """(kind, version, description) of a migration file name, or None if it does not match."""
    m = VERSIONED.fullmatch(name)
    if m:
        return "versioned", m.group("version").replace("_", "."), m.group("description")
    m = REPEATABLE.fullmatch(name)
    if m:
        return "repeatable", None, m.group("description")
    return None


def load_migrations(location: str | os.PathLike[str]) -> MigrationSet:
    """Read and order every migration in `location`; ConfigurationError lists all problems."""
    directory = Path(location)
    if not directory.is_dir():
        raise ConfigurationError([f"{directory}: not a directory"], "no migrations location")
    problems: list[str] = []
    migrations: list[Migration] = []
    seen_versions: dict[tuple[int, ...], str] = {}
    # scandir sorted by name: sorting Path objects costs more than reading the files.
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        name = entry.name
        if name.startswith(".") or not name.endswith(".sql") or not entry.is_file():
            continue
        path = Path(entry.path)
        parsed = parse_name(name)
        if parsed is None:
            problems.append(
                f"{name}: name does not match V<version>__<description>.sql "
                "(version: digits separated by . or _) or R__<description>.sql"
            )
            continue
        kind, version, description = parsed
        if not description.strip("_ "):
            problems.append(f"{name}: the description after '__' is empty")
            continue
        try:
            text = normalise_text(path.read_bytes())
        except UnicodeDecodeError as exc:
            problems.append(f"{name}: not valid UTF-8 (byte {exc.start}: {exc.reason})")
            continue
        if version is not None:
            key = version_key(version)
            if key in seen_versions:
                problems.append(
                    f"{name}: duplicate version {version} (also used by {seen_versions[key]})"
                )
                continue
            seen_versions[key] = name
        migrations.append(
            Migration(
                script=name,
                kind=kind,
                version=version,
                description=description.replace("_", " "),
                checksum=checksum_of(text),
                path=path,
                text=text,
            )
        )
    if problems:
        raise ConfigurationError(problems, f"{directory}: migration files are not usable")
    return MigrationSet(migrations)
