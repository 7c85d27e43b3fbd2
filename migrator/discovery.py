"""Find migration files and order them.

`V<version>__<description>.sql`: version is digits separated by `.` or `_` and compares
numerically part by part (1.9 < 1.10 < 2; trailing zero parts do not count, so 1 == 1.0).
`R__<description>.sql`: repeatable, re-applied whenever its checksum changes, after all
versioned migrations, in name order. Other `.sql` names are errors; non-`.sql` files and
dot-files are ignored. Every problem is collected and reported together. Files are bytes:
any encoding is accepted and sent as is (see splitter).
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
from migrator.splitter import Statement, as_bytes, as_text, iter_statements, split_text

VERSIONED = re.compile(r"V(?P<version>\d+(?:[._]\d+)*)__(?P<description>.*)\.sql")
REPEATABLE = re.compile(r"R__(?P<description>.*)\.sql")
_VERSION_PARTS = re.compile(r"[._]")


_CHUNK = 1 << 20
# Files at most this big are read once and kept (a small file is read for its checksum and
# split again to be applied); larger ones are streamed both times.
KEEP_BYTES = 256 << 10


def _may_source(data: bytes) -> bool:
    """Whether the file may use the client's `source` / `\\.` where a command starts (a
    line's start, or after a `;`): only such a file is read as a script at discovery, to
    include what it sources in its checksum (a `\\.` anywhere else is caught when the
    file is read before migrating, see engine._scan)."""
    if b"\\." not in data and b"source" not in data and b"SOURCE" not in data:
        low = data.lower()
        if b"source" not in low:
            return False
    low = data.lower()
    for needle in (b"source", b"\\."):
        at = low.find(needle)
        while at >= 0:
            before = low[max(0, at - 64) : at].rstrip(b" \t")[-1:]
            after = low[at + len(needle) : at + len(needle) + 1]
            if before in (b"", b"\n", b";") and after in (b" ", b"\t"):
                return True
            at = low.find(needle, at + 1)
    return False


def normalise_text(raw: bytes) -> str:
    """File bytes -> text with line endings normalised to LF, one character per byte (see
    splitter.as_text): what the checksum is computed over."""
    return as_text(_normalised(raw))


def _normalised(raw: bytes) -> bytes:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return raw


def checksum_of(text: str) -> str:
    return hashlib.sha256(as_bytes(text)).hexdigest()


def _file_digest(path: Path, digest: hashlib._Hash) -> bool:
    """Feed the file's normalised bytes (BOM dropped, CRLF and CR read as LF) to `digest`,
    streaming; True if it may use `source`."""
    may_source = False
    carry = b""
    first = True
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            if first and chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
            first = False
            chunk = carry + chunk
            carry = b""
            if chunk.endswith(b"\r"):  # it may be half of a CRLF
                chunk, carry = chunk[:-1], b"\r"
            digest.update(chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
            may_source = may_source or _may_source(tail + chunk)
            tail = chunk[-16:]
    if carry:
        digest.update(b"\n")
    return may_source


def version_key(version: str) -> tuple[int, ...]:
    """Numeric sort key; trailing zero parts dropped so that 1, 1.0 and 1_0 are equal."""
    parts = [int(p) for p in _VERSION_PARTS.split(version)]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@dataclass(frozen=True)
class Migration:
    script: str  # file name, e.g. "V1__create_users.sql" / "R__views.sql"
    kind: str  # "versioned" | "repeatable"
    version: str | None  # "1.10" (None for repeatable)
    description: str  # "create users"
    # hex sha256 of the file's bytes with CRLF/CR read as LF (and of every file it sources)
    checksum: str
    folder: Path  # the migrations location it is in
    # The file's bytes when small (KEEP_BYTES): read once; larger files are streamed.
    data: bytes | None = field(default=None, repr=False, compare=False)
    sources: tuple[Path, ...] = field(default=(), repr=False, compare=False)

    @property
    def path(self) -> Path:
        return self.folder / self.script

    @property
    def location(self) -> Path:
        """The migration folder: `source` paths are relative to it (the client's working
        directory when it is run from there)."""
        return self.folder

    def iter_statements(self, problems: list[str] | None = None) -> Iterator[Statement]:
        """The statements, read as the `mariadb` client reads the file, streaming."""
        if self.data is not None:
            return split_text(
                self.data, name=self.script, location=self.location, problems=problems
            )
        return iter_statements(
            self.path, location=self.location, script=self.script, problems=problems
        )

    def migration_statements(self, problems: list[str], sources: list[Path]) -> Iterator[Statement]:
        """`iter_statements` of a large file, also listing every file it sources."""
        return iter_statements(
            self.path,
            location=self.location,
            script=self.script,
            problems=problems,
            sources=sources,
        )

    def statements(self) -> list[Statement]:
        return list(self.iter_statements())

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


def _read(where: str, name: str, location: Path) -> tuple[str, bytes | None, tuple[Path, ...]]:
    """(checksum, the bytes if small, the files it sources). A file that sources others has
    a checksum over all of them, so a change in a sourced file is a change of the migration;
    one that does not keeps the plain file checksum (history written before `source` support
    stays valid)."""
    # (os.open/os.read: thousands of small files are read per run, so the file object's
    # cost counts.)
    fd = os.open(where, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data: bytes | None = None
        if size <= KEEP_BYTES:
            data = os.read(fd, size + 1)
            while len(data) < size and (more := os.read(fd, size - len(data))):
                data += more
    finally:
        os.close(fd)
    if data is not None and len(data) <= KEEP_BYTES:
        normalised = _normalised(data)
        digest = hashlib.sha256(normalised)
        may_source = _may_source(normalised)
    else:
        data = None
        digest = hashlib.sha256()
        may_source = _file_digest(Path(where), digest)
    if not may_source:
        return digest.hexdigest(), data, ()
    sources: list[Path] = []
    statements = (
        split_text(data, name=name, location=location, problems=[], sources=sources)
        if data is not None
        else iter_statements(
            Path(where), location=location, script=name, problems=[], sources=sources
        )
    )
    for _ in statements:
        pass
    for source in sources:
        shown = source.relative_to(location) if source.is_relative_to(location) else source
        digest.update(b"\0source " + str(shown).encode("utf-8", "surrogateescape") + b"\0")
        try:
            _file_digest(source, digest)
        except OSError:
            digest.update(b"\0missing\0")
    return digest.hexdigest(), data, tuple(sources)


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
            checksum, data, sources = _read(entry.path, name, directory)
        except OSError as exc:
            problems.append(f"{name}: cannot read: {exc.strerror or exc}")
            continue
        key = version_key(version) if version is not None else None
        if key is not None:
            if key in seen_versions:
                problems.append(
                    f"{name}: duplicate version {version} (also used by {seen_versions[key]})"
                )
                continue
            seen_versions[key] = name
        migration = Migration(
            script=name,
            kind=kind,
            version=version,
            description=description.replace("_", " "),
            checksum=checksum,
            folder=directory,
            data=data,
            sources=sources,
        )
        if key is not None:  # (the cached_property, computed once)
            migration.__dict__["version_key"] = key
        migrations.append(migration)
    if problems:
        raise ConfigurationError(problems, f"{directory}: migration files are not usable")
    return MigrationSet(migrations)
