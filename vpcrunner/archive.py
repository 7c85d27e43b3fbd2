"""The in-VPC function's code archive, built from the project's files, deterministically.

Contents (at the paths the function sees under its code directory, which Lambda puts on
`sys.path`): the packages `vpcrunner`, `migrator` and `rotation`; PyMySQL (pure Python: nothing
compiled, so the same files serve arm64; with TLS always on, its caching_sha2_password path
sends the password over the TLS session and needs no `cryptography`, see pymysql/_auth.py);
the migrations folder and the RDS CA bundle, at the same relative paths as in the project, so
the requests' relative `location` and `ca_bundle` resolve alike in both places. boto3 is not
included: the Lambda Python runtime provides it
(https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html).

Deterministic: entries sorted by name, a fixed timestamp and mode, and stored rather than
deflated (zlib's output may differ between builds of zlib). The same files give the same bytes,
hence the same hash (Lambda's CodeSha256, the function's `source_code_hash`), so an unchanged
tree shows no diff in preview.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PACKAGES = ("vpcrunner", "migrator", "rotation")
THIRD_PARTY = ("pymysql",)
HANDLER = "vpcrunner.handler.handle"
# The Lambda runtime the archive is built for (pure-Python dependencies; boto3 from the
# runtime). Supported into 2029: https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html
RUNTIME = "python3.13"
_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can carry
_FILE_MODE = 0o100644 << 16  # a regular file, rw-r--r--


class ArchiveError(ValueError):
    """A file the archive needs is missing or outside the project; names it."""


@dataclass(frozen=True)
class Archive:
    path: Path
    sha256: str  # hex digest of the archive's bytes
    files: tuple[str, ...]  # entry names, in order

    @property
    def code_sha256(self) -> str:
        """The digest as Lambda reports it (CodeSha256) and `source_code_hash` expects it."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode()


def _inside(project: Path, relative: str, what: str) -> Path:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not relative:
        raise ArchiveError(
            f"{what} {relative!r} must be a path inside the project (the function's archive "
            "holds it at the same relative path)"
        )
    return project / path


def _python_files(package_dir: Path, arc_prefix: PurePosixPath) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir)
        if "__pycache__" in relative.parts:
            continue
        found.append((str(arc_prefix / relative.as_posix()), path))
    return found


def archive_files(project: Path, migrations: str, ca_bundle: str) -> list[tuple[str, Path]]:
    """(name in the archive, file) for everything the function needs, sorted by name."""
    entries: list[tuple[str, Path]] = []
    for package in PACKAGES:
        entries += _python_files(project / package, PurePosixPath(package))
    for module in THIRD_PARTY:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ArchiveError(f"{module} is not installed: run `make setup`")
        package_dir = Path(next(iter(spec.submodule_search_locations)))
        entries += _python_files(package_dir, PurePosixPath(module))
        for dist_info in sorted(package_dir.parent.glob(f"{module}-*.dist-info")):
            for name in ("METADATA", "licenses/LICENSE", "LICENSE"):
                if (dist_info / name).is_file():
                    entries.append((f"{dist_info.name}/{name}", dist_info / name))
    location = _inside(project, migrations, "the migrations location")
    if not location.is_dir():
        raise ArchiveError(f"the migrations location {migrations}/ is not a directory")
    for path in sorted(location.rglob("*")):
        relative = path.relative_to(project)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            entries.append((relative.as_posix(), path))
    bundle = _inside(project, ca_bundle, "the CA bundle (appdb:tlsCaBundle)")
    if not bundle.is_file():
        raise ArchiveError(
            f"the CA bundle {ca_bundle} (appdb:tlsCaBundle) does not exist: the function "
            "verifies the database's certificate with it"
        )
    entries.append((PurePosixPath(ca_bundle).as_posix(), bundle))
    return sorted(entries)


def archive_bytes(entries: list[tuple[str, Path]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time=_TIMESTAMP)
            info.create_system = 3  # Unix, whatever builds it: the mode below is then read
            info.external_attr = _FILE_MODE
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def build_archive(
    project: Path,
    out_dir: Path,
    *,
    migrations: str = "schema",
    ca_bundle: str = "certs/rds-global-bundle.pem",
) -> Archive:
    """Write the archive under `out_dir` (named by its digest; written atomically, so two
    programs building it at once cannot leave half a file) and describe it."""
    entries = archive_files(project, migrations, ca_bundle)
    data = archive_bytes(entries)
    digest = hashlib.sha256(data).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"vpcrunner-{digest[:16]}.zip"
    if not (path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == digest):
        handle, temporary = tempfile.mkstemp(dir=out_dir, prefix=".vpcrunner-", suffix=".zip")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    return Archive(path=path, sha256=digest, files=tuple(name for name, _ in entries))
