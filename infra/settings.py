"""One typed, validated settings object built from the stack's config before any resource exists.

The keys, their types and their defaults live in one place only: the `config:` block of
Pulumi.yaml, which the Pulumi CLI (and the offline planner) applies before the program runs. The
program reads that block too (`project_schema`), so every `appdb:` key it is given must be one
declared there: a misspelled or unknown key is refused (with a did-you-mean) instead of silently
ignored. A declared key that is missing means the program was started without the project's
config and is reported like any other problem.

`parse_settings` is pure (a mapping of raw config strings in, Settings or SettingsError out) so it
can be tested without the Pulumi engine; `load_settings` reads the running stack's config. Checks
that need the region itself (its availability zones, the classes RDS offers there) are passed in
as `region_checks` (infra/preflight.py) and reported together with every other problem.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.instance_classes import UnknownInstanceClass, max_connections, memory_bytes

PROJECT_NAMESPACE = "appdb"
PROJECT_FILE = Path(__file__).resolve().parent.parent / "Pulumi.yaml"

# Keys this project used to have: named in the refusal so a stack file can be mended.
RETIRED_KEYS = {
    "parameterGroupFamily": "the parameter group family follows appdb:engineVersion "
    "(mysql8.4 for 8.4): remove the key",
}
# RDS for MySQL major versions this stack runs. A full version (8.4.3) is refused: with
# auto_minor_version_upgrade on, RDS moves the minor version and the provider then records it in
# state, so the next plan would ask to go back ("Cannot upgrade mysql from 8.0.35 to 8.0.32").
# With a major version the provider keeps the configured prefix (compareActualEngineVersion,
# reproduced in plandiff/rules.py: refreshed_engine_version) and RDS owns the minor.
MAJOR_VERSIONS = ("8.0", "8.4")

# The seed's parameter settings plus TLS-only connections, utf8mb4 and stored-function creation
# under binary logging; all exist with the same meaning in the mysql8.0 and mysql8.4 families.
# utf8mb4_0900_ai_ci is still MySQL 8.4's default utf8mb4 collation
# (https://dev.mysql.com/doc/refman/8.4/en/charset-unicode-sets.html), and 8.4 still requires
# log_bin_trust_function_creators for a creator without SUPER/SET_ANY_DEFINER once binary logging
# is on (https://dev.mysql.com/doc/refman/8.4/en/stored-programs-logging.html): RDS's master user
# has neither. Stack config (appdb:dbParameters) can add to or override these.
DEFAULT_DB_PARAMETERS: dict[str, str] = {
    "slow_query_log": "1",
    "long_query_time": "2",
    "general_log": "0",
    "innodb_buffer_pool_size": "{DBInstanceClassMemory*3/4}",
    "require_secure_transport": "1",
    "character_set_server": "utf8mb4",
    "collation_server": "utf8mb4_0900_ai_ci",
    # With binary logging on (any instance with backups), RDS's master user lacks SUPER and
    # cannot create the stored functions in schema/ unless this is on.
    "log_bin_trust_function_creators": "1",
}
# Static parameters only take effect after a reboot; RDS rejects apply_method=immediate for them.
STATIC_DB_PARAMETERS = frozenset({"innodb_buffer_pool_size", "innodb_log_file_size"})
# Parameters whose value is a security invariant of this stack: overrides may not weaken them.
PINNED_DB_PARAMETERS = {"require_secure_transport": "1"}
# Server variables MySQL 8.4 no longer has (https://dev.mysql.com/doc/mysqld-version-reference/
# en/optvar-changes-8-4.html): an override naming one would make RDS refuse the group.
REMOVED_IN_MYSQL_84 = {
    "default_authentication_plugin": "use authentication_policy",
    "expire_logs_days": "binlog retention is set with mysql.rds_set_configuration on RDS",
    "avoid_temporal_upgrade": "removed without replacement",
    "binlog_transaction_dependency_tracking": "removed: WRITESET is always used",
}

# RDS MySQL does not offer Performance Insights on these classes.
NO_PERFORMANCE_INSIGHTS_CLASSES = frozenset(
    {"db.t2.micro", "db.t2.small", "db.t3.micro", "db.t3.small", "db.t4g.micro", "db.t4g.small"}
)
CLOUDWATCH_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
RUNNERS = ("lambda", "direct")
RESERVED_USERNAMES = frozenset({"admin", "root", "rdsadmin", "rdsrepladmin", "mysql", "sys"})

# db.<family><generation><attributes>.<size>, e.g. db.t4g.medium, db.r6gd.4xlarge, db.m5.24xlarge
# (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Concepts.DBInstanceClass.Types.html);
# whether RDS offers the class for MySQL in the region is asked of AWS (infra/preflight.py).
_INSTANCE_CLASS = re.compile(
    r"^db\.[a-z]{1,2}\d{1,2}[a-z-]*\.(?:micro|small|medium|large|xlarge|\d{1,2}xlarge|metal)$"
)
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_HHMM = r"(?:[01]\d|2[0-3]):[0-5]\d"
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
_BACKUP_WINDOW = re.compile(rf"^{_HHMM}-{_HHMM}$")
_MAINTENANCE_WINDOW = re.compile(rf"^{_DAY}:{_HHMM}-{_DAY}:{_HHMM}$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_PARAMETER_NAME = re.compile(r"^[a-z][a-z0-9_.]*$")
_TOKEN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STACK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_CA_IDENTIFIER = re.compile(r"^rds-ca-[a-z0-9-]+$")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,.]+(?:\.[^@\s,.]+)+$")
_SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")


class SettingsError(ValueError):
    """Invalid stack configuration; lists every problem found."""

    def __init__(self, environment: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"invalid configuration for stack '{environment}' "
            f"({len(problems)} problem{'s' if len(problems) != 1 else ''}); "
            f"nothing was declared:\n{lines}"
        )


@dataclass(frozen=True)
class KeySpec:
    """One key of the `config:` block of Pulumi.yaml."""

    name: str
    type: str  # string, integer, boolean, array or object
    default: Any
    description: str


@functools.cache
def project_schema(project_file: Path = PROJECT_FILE) -> dict[str, KeySpec]:
    """The project's own keys (no namespace) as Pulumi.yaml declares them, in file order."""
    document = yaml.safe_load(project_file.read_text(encoding="utf-8")) or {}
    schema: dict[str, KeySpec] = {}
    for key, spec in (document.get("config") or {}).items():
        if ":" in str(key) or not isinstance(spec, dict) or "type" not in spec:
            continue  # another namespace's value (aws:region), not a declaration of ours
        schema[str(key)] = KeySpec(
            str(key), str(spec["type"]), spec.get("default"), str(spec.get("description", ""))
        )
    return schema


@dataclass(frozen=True)
class RegionRequest:
    """What the region must offer: checked against AWS at preview (infra/preflight.py)."""

    region: str
    zone_count: int | None  # None: the stack uses an existing VPC and creates no subnets
    # (config key, instance class, major engine version) for each class the stack runs
    instance_classes: tuple[tuple[str, str, str], ...]
    # an existing VPC that must support private DNS (enableDnsSupport and enableDnsHostnames)
    private_dns_vpc_id: str | None = None


@dataclass(frozen=True)
class RegionFacts:
    problems: list[str]
    availability_zones: tuple[str, ...] = ()


RegionChecks = Callable[[RegionRequest], RegionFacts]


@dataclass(frozen=True)
class DbParameter:
    name: str
    value: str
    apply_method: str  # "immediate" or "pending-reboot"


@dataclass(frozen=True)
class MigrationSettings:
    location: str
    snapshot_before_migrate: bool
    out_of_order: bool
    lock_wait_seconds: int
    statement_lock_wait_seconds: int
    connect_deadline_seconds: int
    ca_bundle_path: str
    snapshot_retention: int = 5  # pre-migration snapshots kept; older ones the stack made go


@dataclass(frozen=True)
class AlarmThreshold:
    threshold: int
    evaluation_periods: int  # of one minute each (slow queries: of five minutes)


@dataclass(frozen=True)
class MonitoringSettings:
    """Alarms, notifications and the dashboard (infra/monitoring.py); defaults are the seed's
    Prometheus rules where it has one."""

    alarm_emails: tuple[str, ...]
    alarm_topic_arn: str | None  # an existing topic instead of the stack's own
    availability_periods: int
    connections: AlarmThreshold  # percent of max_connections
    cpu: AlarmThreshold  # percent
    free_storage: AlarmThreshold  # percent of allocated storage
    freeable_memory: AlarmThreshold  # percent of the class's memory
    cpu_credit_balance: AlarmThreshold  # credits (burstable classes only)
    replica_lag: AlarmThreshold  # seconds
    slow_queries: AlarmThreshold  # slow queries per five minutes
    # Derived per class: the parameter group's max_connections or RDS's default formula.
    max_connections: dict[str, int] = field(default_factory=dict)
    memory_bytes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    project: str
    environment: str
    region: str
    # network
    vpc_cidr: str
    availability_zone_count: int
    existing_vpc_id: str | None
    existing_subnet_ids: tuple[str, ...]
    flow_log_retention_days: int
    # encryption
    kms_deletion_window_days: int
    # credentials
    master_username: str
    master_password_length: int
    secret_recovery_window_days: int
    credentials_rotation: str
    # database
    database_name: str
    engine_version: str  # major version, e.g. "8.4": RDS owns the minor
    replica_engine_version: str  # the replicas' major version (upgraded before the primary's)
    instance_class: str
    replica_instance_class: str
    read_replica_count: int
    allocated_storage: int
    max_allocated_storage: int
    port: int
    multi_az: bool
    backup_retention_days: int
    backup_window: str
    maintenance_window: str
    deletion_protection: bool
    final_snapshot: bool
    apply_immediately: bool
    monitoring_interval_seconds: int
    performance_insights_retention_days: int
    log_retention_days: int
    ca_cert_identifier: str
    db_parameters: tuple[DbParameter, ...]
    migrations: MigrationSettings
    monitoring: MonitoringSettings
    # regular availability zones chosen for the subnets (empty with an existing VPC)
    availability_zones: tuple[str, ...] = ()
    # where the database work of `pulumi up` runs (infra/runner.py)
    runner: str = "lambda"  # "lambda": the in-VPC function; "direct": the machine running up
    runner_deadline_seconds: int = 3600
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def creates_network(self) -> bool:
        return self.existing_vpc_id is None

    @property
    def uses_lambda_runner(self) -> bool:
        return self.runner == "lambda"

    @property
    def major_engine_version(self) -> str:
        return self.engine_version

    @property
    def parameter_group_family(self) -> str:
        return f"mysql{self.engine_version}"

    @property
    def replica_family(self) -> str:
        return f"mysql{self.replica_engine_version}"

    @property
    def name_prefix(self) -> str:
        """Prefix of physical names: `<project>-<environment>`."""
        return f"{self.project}-{self.environment}"


class _Reader:
    """Parses raw config strings, collecting every problem instead of stopping at the first."""

    def __init__(self, raw: Mapping[str, Any], secret_keys: frozenset[str]):
        self.raw = raw
        self.secret_keys = secret_keys
        self.problems: list[str] = []
        self.bad_keys: set[str] = set()

    def _shown(self, key: str, value: Any) -> str:
        if f"{PROJECT_NAMESPACE}:{key}" in self.secret_keys:
            return "[secret]"
        return json.dumps(value) if not isinstance(value, str) else repr(value)

    def problem(self, key: str, value: Any, allowed: str) -> None:
        self.bad_keys.add(key.split(".", 1)[0])
        self.problems.append(f"{PROJECT_NAMESPACE}:{key} = {self._shown(key, value)}: {allowed}")

    def ok(self, *keys: str) -> bool:
        return not self.bad_keys.intersection(keys)

    def _get(self, key: str) -> Any:
        value = self.raw.get(key)
        if value is None:
            self.bad_keys.add(key)
            self.problems.append(
                f"{PROJECT_NAMESPACE}:{key} is not set: Pulumi.yaml declares its default, "
                "so run the program through the Pulumi CLI or scripts/plan"
            )
        return value

    def string(self, key: str, check: Callable[[str], bool], allowed: str, fallback: str) -> str:
        value = self._get(key)
        if value is None:
            return fallback
        text = str(value)
        if not check(text):
            self.problem(key, text, allowed)
            return fallback
        return text

    def integer(self, key: str, low: int, high: int, fallback: int, allowed: str = "") -> int:
        value = self._get(key)
        if value is None:
            return fallback
        allowed = allowed or f"must be an integer from {low} to {high}"
        try:
            number = int(str(value).strip())
        except ValueError:
            self.problem(key, value, allowed)
            return fallback
        if not low <= number <= high:
            self.problem(key, value, allowed)
            return fallback
        return number

    def choice(self, key: str, choices: tuple[int, ...], fallback: int) -> int:
        allowed = "must be one of " + ", ".join(str(c) for c in choices)
        number = self.integer(key, min(choices), max(choices), fallback, allowed)
        if number not in choices:
            self.problem(key, self.raw.get(key), allowed)
            return fallback
        return number

    def boolean(self, key: str, fallback: bool = False) -> bool:
        value = self._get(key)
        if value is None:
            return fallback
        text = str(value).strip().lower()
        if text not in ("true", "false"):
            self.problem(key, value, "must be true or false")
            return fallback
        return text == "true"

    def structured(self, key: str) -> Any:
        """An optional object/list key; the engine passes these as JSON text."""
        value = self.raw.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                self.problem(key, value, "must be a YAML object or list in the stack file")
                return None
        return value


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region of every AWS partition that offers RDS, as botocore's endpoint data lists
    them (offline; a region newer than the installed botocore needs a boto3 upgrade)."""
    import botocore.session

    session = botocore.session.get_session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("rds", partition_name=partition)
    )


def did_you_mean(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """` (did you mean <prefix><closest>?)` or an empty string."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.75)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def _valid_cidr(text: str) -> bool:
    try:
        network = ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        return False
    return 16 <= network.prefixlen <= 24


def _unknown_keys(raw: Mapping[str, Any], schema: Mapping[str, KeySpec]) -> list[str]:
    problems = []
    for key in sorted(set(raw) - set(schema)):
        if key in RETIRED_KEYS:
            problems.append(
                f"{PROJECT_NAMESPACE}:{key} is no longer a setting: {RETIRED_KEYS[key]}"
            )
            continue
        hint = did_you_mean(key, schema, f"{PROJECT_NAMESPACE}:")
        problems.append(
            f"{PROJECT_NAMESPACE}:{key} is not a setting of this project{hint}; "
            "the settings are declared in Pulumi.yaml"
        )
    return problems


def parse_settings(
    raw: Mapping[str, Any],
    *,
    environment: str,
    region: str | None,
    secret_keys: frozenset[str] = frozenset(),
    schema: Mapping[str, KeySpec] | None = None,
    region_checks: RegionChecks | None = None,
) -> Settings:
    """Build Settings from raw config values keyed without the `appdb:` namespace (every `appdb:`
    key the stack has, known or not: unknown ones are refused).

    Raises SettingsError naming every bad key, its value and what is allowed, with the problems
    `region_checks` finds in the region (zones, instance classes) in the same report.
    """
    schema = project_schema() if schema is None else schema
    r = _Reader(raw, secret_keys)
    problems = r.problems
    problems.extend(_unknown_keys(raw, schema))
    if not _STACK_NAME.match(environment):
        problems.append(
            f"stack name {environment!r}: must be 1-20 lowercase letters, digits or hyphens, "
            "starting with a letter (it is part of physical resource names)"
        )
    region_ok = bool(region) and region in known_regions()
    if not region:
        problems.append("aws:region is not set: name the AWS region in the stack file")
    elif not region_ok:
        problems.append(
            f"aws:region = {region!r}: not an AWS region that offers RDS"
            f"{did_you_mean(str(region), known_regions())}"
        )

    # --- network ---
    vpc_cidr = r.string(
        "vpcCidr",
        _valid_cidr,
        "must be an IPv4 network in CIDR form with a /16 to /24 prefix",
        "10.0.0.0/16",
    )
    az_count = r.integer("availabilityZoneCount", 2, 6, 2)
    existing_vpc_id = r.string(
        "existingVpcId",
        lambda v: v == "" or bool(_VPC_ID.match(v)),
        "must be empty or a VPC id like vpc-0123456789abcdef0",
        "",
    )
    subnets_raw = r.structured("existingSubnetIds")
    existing_subnets: tuple[str, ...] = ()
    if subnets_raw is not None:
        if isinstance(subnets_raw, list) and all(
            isinstance(s, str) and _SUBNET_ID.match(s) for s in subnets_raw
        ):
            existing_subnets = tuple(subnets_raw)
        else:
            r.problem(
                "existingSubnetIds",
                subnets_raw,
                "must be a list of subnet ids like subnet-0123abcd",
            )
    if existing_vpc_id and len(existing_subnets) < 2:
        r.problem(
            "existingSubnetIds",
            list(existing_subnets),
            "must list at least 2 subnet ids in different AZs when appdb:existingVpcId is set",
        )
    if existing_subnets and not existing_vpc_id:
        r.problem(
            "existingSubnetIds",
            list(existing_subnets),
            "is only allowed together with appdb:existingVpcId",
        )
    flow_log_retention = r.choice("flowLogRetentionDays", CLOUDWATCH_RETENTION_DAYS, 365)

    # --- encryption ---
    kms_window = r.integer("kmsDeletionWindowDays", 7, 30, 30)

    # --- credentials ---
    username = r.string(
        "masterUsername",
        lambda v: (
            bool(_IDENTIFIER.match(v)) and len(v) <= 16 and v.lower() not in RESERVED_USERNAMES
        ),
        "must be 1-16 letters, digits or underscores starting with a letter, and not a well-known "
        "name such as admin or root (FSBP RDS.25)",
        "appdb_master",
    )
    password_length = r.integer("masterPasswordLength", 16, 41, 32)
    recovery_window = r.integer(
        "secretRecoveryWindowDays", 0, 30, 30, "must be 0 (delete at once) or from 7 to 30"
    )
    if 0 < recovery_window < 7:
        r.problem(
            "secretRecoveryWindowDays",
            recovery_window,
            "must be 0 (delete at once) or from 7 to 30",
        )
    rotation = r.string(
        "credentialsRotation",
        lambda v: bool(_TOKEN.match(v)),
        "must be 1-64 letters, digits, dots, underscores or hyphens",
        "initial",
    )

    # --- database ---
    database_name = r.string(
        "databaseName",
        lambda v: bool(_IDENTIFIER.match(v)) and len(v) <= 64,
        "must be 1-64 letters, digits or underscores starting with a letter",
        "appdb",
    )
    majors = " or ".join(repr(m) for m in MAJOR_VERSIONS)
    engine_version = r.string(
        "engineVersion",
        lambda v: v in MAJOR_VERSIONS,
        f"must be a major version: {majors}; RDS owns the minor version (a full version would "
        "read as a downgrade after RDS's first automatic minor upgrade)",
        "",
    )
    replica_version = (
        r.string(
            "replicaEngineVersion",
            lambda v: v == "" or v in MAJOR_VERSIONS,
            f"must be empty (same as appdb:engineVersion) or a major version: {majors}",
            "",
        )
        or engine_version
    )
    older = (
        engine_version
        and replica_version
        and MAJOR_VERSIONS.index(replica_version) < MAJOR_VERSIONS.index(engine_version)
    )
    if older and r.ok("replicaEngineVersion"):
        r.problem(
            "replicaEngineVersion",
            replica_version,
            f"read replicas cannot run an older major version than their primary "
            f"(appdb:engineVersion = {engine_version!r}): replicas are upgraded before their "
            'source (docs/infrastructure.md, "Major version upgrades")',
        )
    instance_class = r.string(
        "instanceClass",
        lambda v: bool(_INSTANCE_CLASS.match(v)),
        "must be an RDS instance class: db.<family><generation>[attributes].<size>, such as "
        "db.t4g.medium or db.r6g.large",
        "",
    )
    replica_class = r.string(
        "replicaInstanceClass",
        lambda v: v == "" or bool(_INSTANCE_CLASS.match(v)),
        "must be empty (same as appdb:instanceClass) or an RDS instance class: "
        "db.<family><generation>[attributes].<size>, such as db.r6g.large",
        "",
    )
    for key, cls in (("instanceClass", instance_class), ("replicaInstanceClass", replica_class)):
        if cls in NO_PERFORMANCE_INSIGHTS_CLASSES:
            r.problem(
                key,
                cls,
                "Performance Insights (always on in this stack) is not available on micro/small "
                "burstable classes: use db.t4g.medium or larger",
            )
    replicas = r.integer("readReplicaCount", 0, 5, 0)
    allocated = r.integer(
        "allocatedStorage", 20, 65536, 20, "must be an integer from 20 to 65536 (GiB, gp3)"
    )
    max_allocated = r.integer(
        "maxAllocatedStorage", 20, 65536, 100, "must be an integer from 20 to 65536 (GiB)"
    )
    if "allocatedStorage" in raw and "maxAllocatedStorage" in raw and allocated > max_allocated:
        r.problem(
            "allocatedStorage",
            raw.get("allocatedStorage"),
            f"must not exceed appdb:maxAllocatedStorage ({max_allocated})",
        )
    port = r.integer("port", 1150, 65535, 3306)
    multi_az = r.boolean("multiAz")
    backup_days = r.integer("backupRetentionDays", 0, 35, 7)
    if replicas > 0 and backup_days == 0 and "backupRetentionDays" in raw:
        r.problem(
            "backupRetentionDays",
            raw.get("backupRetentionDays"),
            f"must be at least 1: RDS needs automated backups on the source of read replicas "
            f"(appdb:readReplicaCount = {replicas})",
        )
    backup_window = r.string(
        "backupWindow",
        lambda v: bool(_BACKUP_WINDOW.match(v)),
        "must be hh:mm-hh:mm in UTC, e.g. 03:00-04:00",
        "03:00-04:00",
    )
    maintenance_window = r.string(
        "maintenanceWindow",
        lambda v: bool(_MAINTENANCE_WINDOW.match(v)),
        "must be ddd:hh:mm-ddd:hh:mm in UTC, e.g. sun:04:30-sun:05:30",
        "sun:04:30-sun:05:30",
    )
    deletion_protection = r.boolean("deletionProtection")
    final_snapshot = r.boolean("finalSnapshot")
    apply_immediately = r.boolean("applyImmediately")
    monitoring = r.choice("monitoringIntervalSeconds", (1, 5, 10, 15, 30, 60), 60)
    pi_retention = r.choice(
        "performanceInsightsRetentionDays", (7, *(31 * m for m in range(1, 24))), 7
    )
    log_retention = r.choice("logRetentionDays", CLOUDWATCH_RETENTION_DAYS, 90)
    ca_cert = r.string(
        "caCertIdentifier",
        lambda v: bool(_CA_IDENTIFIER.match(v)),
        "must be an RDS CA identifier such as rds-ca-rsa2048-g1",
        "rds-ca-rsa2048-g1",
    )
    db_parameters = _db_parameters(r, {engine_version, replica_version})

    # --- migrations ---
    migrations = MigrationSettings(
        location=r.string(
            "migrationsLocation",
            lambda v: bool(v) and not v.startswith("/") and ".." not in v,
            "must be a directory relative to the project, e.g. schema",
            "schema",
        ),
        snapshot_before_migrate=r.boolean("migrationSnapshot"),
        out_of_order=r.boolean("migrationOutOfOrder"),
        lock_wait_seconds=r.integer("migrationLockWaitSeconds", 1, 86400, 60),
        statement_lock_wait_seconds=r.integer("migrationStatementLockWaitSeconds", 1, 3600, 10),
        connect_deadline_seconds=r.integer("migrationConnectDeadlineSeconds", 1, 86400, 600),
        ca_bundle_path=r.string(
            "tlsCaBundle",
            lambda v: bool(v.strip()),
            "must be the path of a PEM CA bundle",
            "certs/rds-global-bundle.pem",
        ),
        snapshot_retention=r.integer("migrationSnapshotRetention", 1, 100, 5),
    )

    # --- runner (where migrations and rotation run) ---
    runner = r.string(
        "runner",
        lambda v: v in RUNNERS,
        "must be lambda (a function in the VPC does the database work) or direct (the machine "
        "running `pulumi up` connects to the database itself)",
        "lambda",
    )
    allow_direct = r.boolean("runnerAllowDirect")
    if runner == "direct" and not existing_vpc_id and not allow_direct:
        r.problem(
            "runner",
            runner,
            "direct needs a machine inside the VPC, but this stack creates its own VPC, which has "
            "no way in: use lambda, or set appdb:existingVpcId to a VPC with a runner in it, or "
            "appdb:runnerAllowDirect: true if the database is reachable anyway (the local "
            "rehearsal)",
        )
    zones: tuple[str, ...] = ()
    if region_checks is not None and region_ok and region:
        classes: list[tuple[str, str, str]] = []
        if instance_class and engine_version and r.ok("instanceClass"):
            classes.append(("instanceClass", instance_class, engine_version))
        replica_key = "replicaInstanceClass" if replica_class else "instanceClass"
        wanted = (replica_key, replica_class or instance_class, replica_version)
        if replicas and all(wanted) and r.ok(replica_key) and wanted not in classes:
            classes.append(wanted)
        count_ok = r.ok("availabilityZoneCount")
        facts = region_checks(
            RegionRequest(
                region=region,
                zone_count=az_count if count_ok and not existing_vpc_id else None,
                instance_classes=tuple(classes),
                # the lambda runner's endpoint uses private DNS in it (infra/runner.py)
                private_dns_vpc_id=existing_vpc_id
                if existing_vpc_id and runner == "lambda" and r.ok("existingVpcId")
                else None,
            )
        )
        problems.extend(facts.problems)
        zones = facts.availability_zones

    alarms = _monitoring(r, db_parameters, (instance_class, replica_class or instance_class))
    runner_deadline = r.integer("runnerDeadlineSeconds", 60, 86400, 3600)
    bundle = migrations.ca_bundle_path
    if runner == "lambda" and (bundle.startswith("/") or ".." in bundle.split("/")):
        r.problem(
            "tlsCaBundle",
            bundle,
            "with appdb:runner = lambda, must be a path inside the project (the function's "
            "archive carries the bundle at that path), e.g. certs/rds-global-bundle.pem",
        )

    if problems:
        raise SettingsError(environment, problems)
    return Settings(
        project=PROJECT_NAMESPACE,
        environment=environment,
        region=region or "",
        vpc_cidr=vpc_cidr,
        availability_zone_count=az_count,
        existing_vpc_id=existing_vpc_id or None,
        existing_subnet_ids=existing_subnets,
        flow_log_retention_days=flow_log_retention,
        kms_deletion_window_days=kms_window,
        master_username=username,
        master_password_length=password_length,
        secret_recovery_window_days=recovery_window,
        credentials_rotation=rotation,
        database_name=database_name,
        engine_version=engine_version,
        replica_engine_version=replica_version,
        instance_class=instance_class,
        replica_instance_class=replica_class or instance_class,
        read_replica_count=replicas,
        allocated_storage=allocated,
        max_allocated_storage=max_allocated,
        port=port,
        multi_az=multi_az,
        backup_retention_days=backup_days,
        backup_window=backup_window,
        maintenance_window=maintenance_window,
        deletion_protection=deletion_protection,
        final_snapshot=final_snapshot,
        apply_immediately=apply_immediately,
        monitoring_interval_seconds=monitoring,
        performance_insights_retention_days=pi_retention,
        log_retention_days=log_retention,
        ca_cert_identifier=ca_cert,
        db_parameters=db_parameters,
        migrations=migrations,
        availability_zones=zones,
        monitoring=alarms,
        runner=runner,
        runner_deadline_seconds=runner_deadline,
        tags={"Project": PROJECT_NAMESPACE, "Environment": environment, "ManagedBy": "pulumi"},
    )


def _db_parameters(r: _Reader, majors: set[str]) -> tuple[DbParameter, ...]:
    """The default parameters with the stack's appdb:dbParameters applied on top."""
    merged = {
        name: DbParameter(name, value, _apply_method(name))
        for name, value in DEFAULT_DB_PARAMETERS.items()
    }
    overrides = r.structured("dbParameters")
    if overrides is None:
        return tuple(merged[name] for name in sorted(merged))
    if not isinstance(overrides, dict):
        r.problem("dbParameters", overrides, "must be an object of parameter name -> value")
        return ()
    for name, spec in sorted(overrides.items()):
        key = f"dbParameters.{name}"
        if not _PARAMETER_NAME.match(str(name)):
            r.problem(key, spec, "parameter names are lowercase letters, digits, _ and .")
            continue
        if isinstance(spec, dict):
            value, method = spec.get("value"), spec.get("applyMethod", _apply_method(name))
            if set(spec) - {"value", "applyMethod"} or method not in (
                "immediate",
                "pending-reboot",
            ):
                r.problem(
                    key,
                    spec,
                    "must be a value or {value: ..., applyMethod: immediate|pending-reboot}",
                )
                continue
        else:
            value, method = spec, _apply_method(name)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            r.problem(key, spec, "the value must be a string or a number")
            continue
        text = str(value)
        if "8.4" in majors and name in REMOVED_IN_MYSQL_84:
            r.problem(key, spec, f"MySQL 8.4 has no such parameter ({REMOVED_IN_MYSQL_84[name]})")
            continue
        pinned = PINNED_DB_PARAMETERS.get(name)
        if pinned is not None and text != pinned:
            r.problem(key, spec, f"must stay {pinned}: the stack only accepts TLS connections")
            continue
        merged[name] = DbParameter(name, text, method)
    return tuple(merged[name] for name in sorted(merged))


def _monitoring(
    r: _Reader, db_parameters: tuple[DbParameter, ...], classes: tuple[str, ...]
) -> MonitoringSettings:
    emails_text = r.string("alarmEmails", lambda v: True, "", "")
    emails = tuple(e.strip() for e in emails_text.split(",") if e.strip())
    bad = [e for e in emails if not _EMAIL.match(e)]
    if bad:
        r.problem("alarmEmails", emails_text, f"not e-mail addresses: {', '.join(bad)}")
    topic = r.string(
        "alarmTopicArn",
        lambda v: v == "" or bool(_SNS_TOPIC_ARN.match(v)),
        "must be empty or an SNS topic ARN like arn:aws:sns:us-east-1:123456789012:ops",
        "",
    )
    if emails and topic:
        r.problem(
            "alarmTopicArn",
            topic,
            "give either appdb:alarmEmails (subscribed to the stack's own topic) or an "
            "existing topic, not both",
        )

    def alarm(name: str, unit: str, low: int, high: int, fallback: int, periods: int):
        return AlarmThreshold(
            r.integer(f"alarm{name}{unit}", low, high, fallback),
            r.integer(f"alarm{name}Periods", 1, 60, periods),
        )

    max_connections_parameter = next(
        (p.value for p in db_parameters if p.name == "max_connections"), None
    )
    connections_by_class: dict[str, int] = {}
    memory_by_class: dict[str, int] = {}
    for key, cls in zip(("instanceClass", "replicaInstanceClass"), classes, strict=True):
        if not cls or cls in memory_by_class:
            continue
        try:
            memory_by_class[cls] = memory_bytes(cls)
            connections_by_class[cls] = max_connections(cls, max_connections_parameter)
        except UnknownInstanceClass:
            r.problem(
                key,
                cls,
                "its memory is not known to infra/instance_classes.py, so the connection and "
                "memory alarms cannot be derived: use a db.t3/t4g, db.m*, db.r*, db.x2* or "
                "db.z1d class, or add the class there",
            )
        except ValueError as error:
            r.problem("dbParameters.max_connections", max_connections_parameter, str(error))
    return MonitoringSettings(
        alarm_emails=emails,
        alarm_topic_arn=topic or None,
        availability_periods=r.integer("alarmAvailabilityPeriods", 1, 60, 1),
        connections=alarm("Connections", "Percent", 1, 100, 80, 2),
        cpu=alarm("Cpu", "Percent", 1, 100, 80, 5),
        free_storage=alarm("FreeStorage", "Percent", 1, 99, 10, 5),
        freeable_memory=alarm("FreeableMemory", "Percent", 1, 99, 10, 5),
        cpu_credit_balance=alarm("CpuCredit", "Balance", 0, 100000, 20, 5),
        replica_lag=alarm("ReplicaLag", "Seconds", 1, 86400, 30, 1),
        slow_queries=alarm("SlowQueries", "", 1, 1000000, 10, 1),
        max_connections=connections_by_class,
        memory_bytes=memory_by_class,
    )


def _apply_method(name: str) -> str:
    return "pending-reboot" if name in STATIC_DB_PARAMETERS else "immediate"


def _stack_config() -> dict[str, Any]:
    """Every config value the engine gave the program ("ns:key" -> value): the values set in the
    runtime (the mock engine) and the PULUMI_CONFIG bag the Python language host passes. Keys in
    the older "ns:config:key" form are normalised."""
    from pulumi.runtime import config as runtime_config

    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return {key.replace(":config:", ":", 1): value for key, value in values.items()}


def load_settings(region_checks: RegionChecks | None = None) -> Settings:
    """Read and validate the running stack's config; raises SettingsError before any resource
    (the checks of the region run through `region_checks`, which may declare the provider)."""
    import pulumi

    raw: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for full_key, value in _stack_config().items():
        namespace, _, key = full_key.partition(":")
        if namespace != PROJECT_NAMESPACE or value is None:
            continue
        if pulumi.runtime.is_config_secret(full_key):
            # None of these keys should be secret; the value is read, never shown.
            secret_keys.add(full_key)
        raw[key] = value
    region = pulumi.Config("aws").get("region")
    return parse_settings(
        raw,
        environment=pulumi.get_stack(),
        region=region,
        secret_keys=frozenset(secret_keys),
        region_checks=region_checks,
    )
