"""Typed requests: a dynamic resource's inputs, parsed once.

Each request class reads the inputs Pulumi hands a provider (or an invocation's payload, which
is the same mapping) into one frozen object: numbers come back from Pulumi's wire format as
floats (3306.0 is the port 3306), a missing optional input takes its default, and every problem
is reported at once. `as_inputs()` gives the mapping back in the shape the state has always
recorded (the inputs echoed into the outputs), so parse and echo are inverses.

No password is ever a field: credentials are read from Secrets Manager where the work runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

# Pulumi's marker for a value not known yet during preview (e.g. the endpoint of a new instance).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


class InvalidInputs(ValueError):
    """Inputs that cannot be parsed; `problems` holds (input name, reason) pairs, all of them."""

    def __init__(self, what: str, problems: list[tuple[str, str]]):
        self.problems = problems
        listed = "; ".join(f"{key}: {reason}" for key, reason in problems)
        super().__init__(f"invalid inputs for {what}: {listed}")


def normalise(value: Any) -> Any:
    """Wire values as plain ones: a float that is an integer becomes an int, recursively."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    return value


class _Reader:
    """Reads typed values out of an inputs mapping, collecting every problem.

    With `allow_unknown` (during preview) a value Pulumi does not know yet is not a problem;
    the typed object is then not built, only the problems are wanted.
    """

    def __init__(self, inputs: Mapping[str, Any], *, allow_unknown: bool, secret: frozenset[str]):
        self.inputs = inputs
        self.allow_unknown = allow_unknown
        self.secret = secret
        self.problems: list[tuple[str, str]] = []

    def _raw(self, key: str) -> Any:
        return self.inputs.get(key)

    def _unknown(self, key: str, value: Any) -> bool:
        if value != UNKNOWN:
            return False
        if not self.allow_unknown:
            self.problems.append((key, "is not known (a value only known after the update)"))
        return True

    def _shown(self, key: str, value: Any) -> str:
        return "a non-empty string is required" if key in self.secret else repr(value)

    def string(self, key: str) -> str:
        value = self._raw(key)
        if self._unknown(key, value):
            return ""
        if not isinstance(value, str) or not value:
            self.problems.append((key, f"required string, got {self._shown(key, value)}"))
            return ""
        return value

    def optional_string(self, key: str) -> str | None:
        value = self._raw(key)
        if value is None or value == "" or self._unknown(key, value):
            return None
        if not isinstance(value, str):
            self.problems.append((key, f"must be a string, got {value!r}"))
            return None
        return value

    def integer(
        self, key: str, default: int | None = None, *, low: int = 1, high: int = 2**31
    ) -> int:
        value = self._raw(key)
        if value is None and default is not None:
            return default
        if self._unknown(key, value):
            return default or 0
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not float(value).is_integer()
            or not low <= value <= high
        ):
            self.problems.append(
                (key, f"must be a whole number from {low} to {high}, got {value!r}")
            )
            return default or 0
        return int(value)

    def port(self, key: str = "port") -> int:
        value = self._raw(key)
        if self._unknown(key, value):
            return 0
        if not (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and float(value).is_integer()
            and 0 < value < 65536
        ):
            self.problems.append((key, f"must be 1-65535, got {value!r}"))
            return 0
        return int(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._raw(key)
        if value is None:
            return default
        if self._unknown(key, value):
            return default
        if not isinstance(value, bool):
            self.problems.append((key, f"must be true or false, got {value!r}"))
            return default
        return value

    def string_map(self, key: str) -> dict[str, str]:
        value = self._raw(key)
        if self._unknown(key, value):
            return {}
        if not (
            isinstance(value, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ):
            self.problems.append((key, "must map script name to checksum (strings)"))
            return {}
        return dict(value)

    def mapping(self, key: str, what: str) -> Mapping[str, Any]:
        value = self._raw(key)
        if self._unknown(key, value):
            return {}
        if not isinstance(value, Mapping):
            self.problems.append((key, f"must map {what}"))
            return {}
        return value


def _parse(
    what: str,
    inputs: Mapping[str, Any],
    build: Any,
    *,
    secret: frozenset[str] = frozenset(),
) -> Any:
    reader = _Reader(inputs, allow_unknown=False, secret=secret)
    built = build(reader)
    if reader.problems:
        raise InvalidInputs(what, reader.problems)
    return built


def _problems(
    inputs: Mapping[str, Any], build: Any, *, secret: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    reader = _Reader(inputs, allow_unknown=True, secret=secret)
    build(reader)
    return reader.problems


def resolve(root: Path, path: str) -> Path:
    """A path input: relative paths are relative to `root` (the project directory, which is
    the working directory of the program and of Pulumi's provider host; or the function's
    unpacked archive, which holds the same files at the same relative paths)."""
    return Path(path) if Path(path).is_absolute() else root / path


class _Request:
    """What every request class shares: parse (every problem at once), the problems alone
    (during preview, unknown values allowed), and the inputs mapping back."""

    WHAT: ClassVar[str]  # what the resource is, for messages

    @classmethod
    def _read(cls, r: _Reader) -> Self:
        raise NotImplementedError

    @classmethod
    def parse(cls, inputs: Mapping[str, Any]) -> Self:
        return _parse(cls.WHAT, inputs, cls._read)

    @classmethod
    def problems(cls, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        return _problems(inputs, cls._read)

    def as_inputs(self) -> dict[str, Any]:
        return _as_inputs(self)


# --- schema migrations ---------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationRequest(_Request):
    """The `SchemaMigrations` resource's inputs."""

    secret_arn: str
    region: str
    host: str
    port: int
    database: str
    location: str  # the migrations folder, relative to the project directory
    migrations: dict[str, str]  # script -> checksum: what the update was planned with
    ca_bundle: str | None = None  # PEM bundle path, relative to the project; None: system store
    connect_deadline_seconds: int = 600
    out_of_order: bool = False
    lock_wait_seconds: int = 60
    statement_lock_wait_seconds: int = 10
    snapshot_before_migrate: bool = False
    snapshot_retention: int = 5  # pre-migration snapshots kept (older ones the engine made go)
    instance_identifier: str | None = None  # RDS instance to snapshot before migrating
    # Where the work runs: the in-VPC function's name (None: in the provider's own process,
    # the `direct` runner), and how long one `pulumi up` may keep invoking it.
    runner: str | None = None
    runner_deadline_seconds: int = 3600

    WHAT = "schema migrations"

    @classmethod
    def _read(cls, r: _Reader) -> MigrationRequest:
        return cls(
            secret_arn=r.string("secret_arn"),
            region=r.string("region"),
            host=r.string("host"),
            port=r.port(),
            database=r.string("database"),
            location=r.string("location"),
            migrations=r.string_map("migrations"),
            ca_bundle=r.optional_string("ca_bundle"),
            connect_deadline_seconds=r.integer(
                "connect_deadline_seconds", cls.connect_deadline_seconds
            ),
            out_of_order=r.boolean("out_of_order", cls.out_of_order),
            lock_wait_seconds=r.integer("lock_wait_seconds", cls.lock_wait_seconds),
            statement_lock_wait_seconds=r.integer(
                "statement_lock_wait_seconds", cls.statement_lock_wait_seconds
            ),
            snapshot_before_migrate=r.boolean(
                "snapshot_before_migrate", cls.snapshot_before_migrate
            ),
            snapshot_retention=r.integer("snapshot_retention", cls.snapshot_retention),
            instance_identifier=r.optional_string("instance_identifier"),
            runner=r.optional_string("runner"),
            runner_deadline_seconds=r.integer(
                "runner_deadline_seconds", cls.runner_deadline_seconds
            ),
        )

    @property
    def target(self) -> str:
        return f"database {self.database!r} on {self.host}:{self.port}"


# --- master password rotation --------------------------------------------------------------


@dataclass(frozen=True)
class MasterRotationRequest(_Request):
    """The `MasterPasswordRotation` resource's inputs. The new password is not one of them:
    it is generated where the rotation runs (vpcrunner.tasks), for each new `rotation` value."""

    secret_arn: str
    region: str
    host: str
    port: int
    rotation: str  # appdb:credentialsRotation
    ca_bundle: str | None = None
    connect_deadline_seconds: int = 600
    test_deadline_seconds: int = 30
    password_length: int = 32  # appdb:masterPasswordLength
    # Where the work runs: the in-VPC function's name (None: in the provider's own process,
    # the `direct` runner), and how long one `pulumi up` may keep invoking it.
    runner: str | None = None
    runner_deadline_seconds: int = 3600

    WHAT = "master password rotation"

    @classmethod
    def _read(cls, r: _Reader) -> MasterRotationRequest:
        return cls(
            secret_arn=r.string("secret_arn"),
            region=r.string("region"),
            host=r.string("host"),
            port=r.port(),
            rotation=r.string("rotation"),
            ca_bundle=r.optional_string("ca_bundle"),
            connect_deadline_seconds=r.integer(
                "connect_deadline_seconds", cls.connect_deadline_seconds
            ),
            test_deadline_seconds=r.integer("test_deadline_seconds", cls.test_deadline_seconds),
            password_length=r.integer("password_length", cls.password_length, low=16, high=41),
            runner=r.optional_string("runner"),
            runner_deadline_seconds=r.integer(
                "runner_deadline_seconds", cls.runner_deadline_seconds
            ),
        )


# --- application users ---------------------------------------------------------------------


@dataclass(frozen=True)
class RoleTarget:
    """Where a role's clients connect, and the role's secret."""

    secret_arn: str
    host: str
    port: int


@dataclass(frozen=True)
class ApplicationUsersRequest(_Request):
    """The `ApplicationUsers` resource's inputs."""

    master_secret_arn: str
    region: str
    schema: str
    rotation: str
    roles: dict[str, RoleTarget]
    privileges: dict[str, tuple[str, ...]]
    account_prefix: str = ""
    ca_bundle: str | None = None
    connect_deadline_seconds: int = 600
    test_deadline_seconds: int = 60
    # Where the work runs: the in-VPC function's name (None: in the provider's own process,
    # the `direct` runner), and how long one `pulumi up` may keep invoking it.
    runner: str | None = None
    runner_deadline_seconds: int = 3600

    WHAT = "application users"

    @classmethod
    def _read(cls, r: _Reader) -> ApplicationUsersRequest:
        roles: dict[str, RoleTarget] = {}
        for role, spec in r.mapping("roles", "role -> secret_arn/host/port").items():
            if not isinstance(spec, Mapping):
                r.problems.append(("roles", f"role {role!r}: must be secret_arn/host/port"))
                continue
            sub = _Reader(spec, allow_unknown=r.allow_unknown, secret=r.secret)
            roles[str(role)] = RoleTarget(sub.string("secret_arn"), sub.string("host"), sub.port())
            r.problems += [
                ("roles", f"role {role!r}: {key} {reason}") for key, reason in sub.problems
            ]
        privileges: dict[str, tuple[str, ...]] = {}
        for role, granted in r.mapping("privileges", "role -> list of privileges").items():
            if not isinstance(granted, list | tuple) or not all(
                isinstance(p, str) for p in granted
            ):
                r.problems.append(("privileges", f"role {role!r}: must be a list of privileges"))
                continue
            privileges[str(role)] = tuple(granted)
        if r.inputs.get("roles") != UNKNOWN and r.inputs.get("privileges") != UNKNOWN:
            for role in roles:
                if role not in privileges:
                    r.problems.append(
                        ("roles", f"role {role!r} has no declared privileges (see `privileges`)")
                    )
        return cls(
            master_secret_arn=r.string("master_secret_arn"),
            region=r.string("region"),
            schema=r.string("schema"),
            rotation=r.string("rotation"),
            roles=roles,
            privileges=privileges,
            account_prefix=r.optional_string("account_prefix") or "",
            ca_bundle=r.optional_string("ca_bundle"),
            connect_deadline_seconds=r.integer(
                "connect_deadline_seconds", cls.connect_deadline_seconds
            ),
            test_deadline_seconds=r.integer("test_deadline_seconds", cls.test_deadline_seconds),
            runner=r.optional_string("runner"),
            runner_deadline_seconds=r.integer(
                "runner_deadline_seconds", cls.runner_deadline_seconds
            ),
        )

    def as_inputs(self) -> dict[str, Any]:
        inputs = super().as_inputs()
        inputs["privileges"] = {role: list(p) for role, p in self.privileges.items()}
        return inputs


def _as_inputs(request: Any) -> dict[str, Any]:
    """The request as the inputs mapping (nested dataclasses as mappings), in field order."""
    return {f.name: _plain(getattr(request, f.name)) for f in dataclasses.fields(request)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
