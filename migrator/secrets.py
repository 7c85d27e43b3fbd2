"""Database credentials from AWS Secrets Manager (the standard RDS secret JSON shape).

A boto3 client is created per call (nothing kept around to pickle); boto3 itself honours
AWS_ENDPOINT_URL, which is how local stand-ins (moto) are reached.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from migrator.errors import SecretError


@dataclass(frozen=True)
class DatabaseSecret:
    engine: str
    host: str
    port: int
    username: str
    password: str = dataclasses.field(repr=False)
    dbname: str | None = None
    dbInstanceIdentifier: str | None = None


REQUIRED_KEYS = ("host", "username", "password")


def parse_database_secret(secret_arn: str, secret_string: str) -> DatabaseSecret:
    """Parse the secret's JSON; errors name the ARN and the problem, never the value."""
    try:
        data = json.loads(secret_string)
    except ValueError as exc:
        raise SecretError(
            f"secret {secret_arn}: value is not valid JSON (line {getattr(exc, 'lineno', '?')}, "
            f"column {getattr(exc, 'colno', '?')})"
        ) from None
    if not isinstance(data, dict):
        raise SecretError(f"secret {secret_arn}: value is JSON but not an object")
    return database_secret_from(secret_arn, data)


def database_secret_from(secret_arn: str, data: Mapping[str, Any]) -> DatabaseSecret:
    """The secret's already-decoded value; errors name the ARN and the key, never a value."""
    missing = [k for k in REQUIRED_KEYS if not data.get(k)]
    if missing:
        raise SecretError(f"secret {secret_arn}: missing key(s) {', '.join(missing)}")
    try:
        port = int(data.get("port", 3306))
    except (TypeError, ValueError):
        raise SecretError(f"secret {secret_arn}: 'port' is not a number") from None
    return DatabaseSecret(
        engine=str(data.get("engine", "mysql")),
        host=str(data["host"]),
        port=port,
        username=str(data["username"]),
        password=str(data["password"]),
        dbname=data.get("dbname") or None,
        dbInstanceIdentifier=data.get("dbInstanceIdentifier") or None,
    )


def fetch_database_secret(
    secret_arn: str, region: str | None = None, version_stage: str = "AWSCURRENT"
) -> DatabaseSecret:
    """Fetch and parse the secret; SecretError on a missing/unreadable/malformed secret."""
    import boto3
    import botocore.exceptions

    try:
        client = boto3.client("secretsmanager", region_name=region)
        response = client.get_secret_value(SecretId=secret_arn, VersionStage=version_stage)
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        if code == "ResourceNotFoundException":
            raise SecretError(f"secret {secret_arn}: not found ({version_stage})") from None
        raise SecretError(f"secret {secret_arn}: {code}: {error.get('Message', '')}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise SecretError(f"secret {secret_arn}: cannot reach Secrets Manager: {exc}") from None
    secret_string = response.get("SecretString")
    if secret_string is None:
        raise SecretError(f"secret {secret_arn}: has no SecretString (binary secrets unsupported)")
    return parse_database_secret(secret_arn, secret_string)
