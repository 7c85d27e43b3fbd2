"""What reviewers must not miss: replace-forcing properties and risky changes.

REPLACE_FORCING lists, per resource type, the input properties whose change makes the
provider delete and re-create the resource. pulumi-aws is bridged from the Terraform AWS
provider, and the bridge plans a replacement exactly for the attributes that provider's
schema marks `ForceNew: true` (terraform-provider-aws, e.g. internal/service/rds/instance.go
for aws_db_instance). Names here are the Pulumi (camelCase) input names.
"""

from __future__ import annotations

import re

DB_INSTANCE = "aws:rds/instance:Instance"
SUBNET_GROUP = "aws:rds/subnetGroup:SubnetGroup"

REPLACE_FORCING: dict[str, frozenset[str]] = {
    # aws_db_instance: every attribute with ForceNew in the provider schema.
    DB_INSTANCE: frozenset(
        {
            "availabilityZone",
            "characterSetName",
            "customIamInstanceProfile",
            "dbName",
            "engine",
            "identifier",
            "identifierPrefix",
            "kmsKeyId",
            "ncharCharacterSetName",
            "restoreToPointInTime",
            "s3Import",
            "snapshotIdentifier",
            "storageEncrypted",
            "timezone",
            "username",
        }
    ),
    # aws_db_subnet_group: a new group means moving every instance that uses it.
    SUBNET_GROUP: frozenset({"name", "namePrefix"}),
    "aws:rds/parameterGroup:ParameterGroup": frozenset(
        {"name", "namePrefix", "family", "description"}
    ),
    "aws:rds/optionGroup:OptionGroup": frozenset(
        {"name", "namePrefix", "engineName", "majorEngineVersion", "optionGroupDescription"}
    ),
    "aws:kms/key:Key": frozenset(
        {
            "customerMasterKeySpec",
            "keySpec",
            "keyUsage",
            "multiRegion",
            "customKeyStoreId",
            "xksKeyId",
        }
    ),
    "aws:secretsmanager/secret:Secret": frozenset({"name", "namePrefix"}),
    "aws:ec2/vpc:Vpc": frozenset({"cidrBlock", "ipv4IpamPoolId"}),
    "aws:ec2/subnet:Subnet": frozenset(
        {"vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId"}
    ),
    "aws:ec2/securityGroup:SecurityGroup": frozenset(
        {"name", "namePrefix", "vpcId", "description"}
    ),
    # random_password: every argument is ForceNew (keepers are how a new value is asked for).
    "random:index/randomPassword:RandomPassword": frozenset(
        {
            "keepers",
            "length",
            "lower",
            "minLower",
            "minNumeric",
            "minSpecial",
            "minUpper",
            "number",
            "numeric",
            "overrideSpecial",
            "special",
            "upper",
        }
    ),
}

# Where a database instance's data lives: deleting one of these is flagged (a read replica's
# data can be re-created from its primary, but the reads it serves fail meanwhile).
DATA_BEARING_TYPES = frozenset({DB_INSTANCE, "aws:kms/key:Key"})


# --- engine versions ------------------------------------------------------------------------


def refreshed_engine_version(configured: str, actual: str, pending: str = "") -> str:
    """The `engine_version` the provider records in state when it reads an instance: the
    configured value unless RDS runs something else. Reproduces terraform-provider-aws'
    compareActualEngineVersion (internal/service/rds/engine_version.go; pulumi-aws is bridged
    from it): `engine_version_actual` always takes the running version, but `engine_version`
    keeps the configured value while an upgrade to it is pending, and when the configured value
    is a prefix of the running one ("1.3" for "1.3.27"). So a configured major version survives
    RDS's minor upgrades, and a configured full version is overwritten by them."""
    if configured and configured == pending:
        return configured
    head = actual[: len(configured) + 1] if len(actual) > len(configured) else actual
    if configured != actual and configured + "." == head:
        return configured
    return actual


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def major_of(version: str) -> str:
    return ".".join(version.split(".")[:2])


# A subnet group change on an existing instance is an in-place ModifyDBInstance in the
# provider, but it moves the instance to other subnets (a VPC move), which RDS refuses for a
# Multi-AZ instance and which interrupts service otherwise.
RISKY_IN_PLACE: dict[str, dict[str, str]] = {
    DB_INSTANCE: {
        "dbSubnetGroupName": "moves the instance to another DB subnet group (a VPC move: "
        "downtime; RDS refuses it for Multi-AZ instances)",
    }
}


def camel(name: str) -> str:
    """Pulumi input name for a (possibly snake_case) property name."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def forces_replacement(resource_type: str, options: dict, top_level_property: str) -> bool:
    prop = camel(top_level_property)
    if prop in REPLACE_FORCING.get(resource_type, frozenset()):
        return True
    declared = options.get("replace_on_changes") or options.get("replaceOnChanges") or []
    return "*" in declared or prop in {camel(p.split(".")[0]) for p in declared}


# --- destructive SQL ------------------------------------------------------------------------

_NOT_A_COLUMN = {
    "INDEX",
    "KEY",
    "PRIMARY",
    "FOREIGN",
    "CONSTRAINT",
    "CHECK",
    "PARTITION",
    "DEFAULT",
    "SYSTEM",
}


def code_only(sql: str) -> str:
    """`sql` with comments and quoted strings/identifiers blanked out (same length).

    `/*! ... */` and `/*M! ... */` versioned comments are kept: MySQL/MariaDB execute them.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        two = sql[i : i + 2]
        if two == "/*":
            if sql.startswith(("/*!", "/*M!"), i):
                start = i + (3 if sql[i + 2] == "!" else 4)
                while start < n and sql[start].isdigit():
                    start += 1
                out.append(" " * (start - i))
                i = start
                continue
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(" " * (end - i))
            i = end
        elif two == "*/":  # the end of a versioned comment we kept open
            out.append("  ")
            i += 2
        elif c == "#" or (two == "--" and (i + 2 >= n or sql[i + 2] in " \t\r\n")):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif c in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\" and c != "`":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            end = min(j + 1, n)
            out.append(c + " " * (end - i - 2) + (c if end - i >= 2 else ""))
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*|`[^`]*`")


def destructive_operations(sql: str) -> list[str]:
    """Which destructive operations a statement performs, e.g. ["DROP TABLE"].

    DROP TABLE / DATABASE / SCHEMA (not TEMPORARY tables), ALTER TABLE ... DROP [COLUMN] c,
    and TRUNCATE [TABLE]. Comments and string literals never match.
    """
    words = [w.upper() for w in _WORD.findall(code_only(sql))]
    found: list[str] = []
    if not words:
        return found
    if words[0] == "TRUNCATE":
        found.append("TRUNCATE")
    elif words[0] == "DROP" and len(words) > 1:
        target = words[1]
        if target in {"TABLE", "TABLES"}:
            found.append("DROP TABLE")
        elif target in {"DATABASE", "SCHEMA"}:
            found.append("DROP DATABASE")
    elif words[0] == "ALTER" and "TABLE" in words[:4]:
        for index, word in enumerate(words):
            if word != "DROP" or index + 1 >= len(words):
                continue
            following = words[index + 1]
            previous = words[index - 1] if index else ""
            if previous == "COLUMN" or following in _NOT_A_COLUMN:
                continue  # ALTER COLUMN c DROP DEFAULT, DROP INDEX i, ...
            found.append("DROP COLUMN")
    return sorted(set(found))
