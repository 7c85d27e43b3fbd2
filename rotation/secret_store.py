"""The Secrets Manager side of rotation: staging labels and versions of one secret.

A boto3 client is created per `SecretStore` (one per operation, never kept on a Pulumi
provider); boto3 honours AWS_ENDPOINT_URL, which is how local stand-ins (moto) are reached.

Every read names its staging label explicitly (`VersionStage=`): a read without one means
"AWSCURRENT" on AWS, but moto answers it from the version it created last, which is not
always the current one after `update_secret_version_stage`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.exceptions

from rotation.errors import SecretStoreError

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"

# Namespace of the version ids (ClientRequestTokens) rotation derives; any fixed UUID works.
_TOKEN_NAMESPACE = uuid.UUID("6f1d6c1e-7a53-4c52-9a4e-2f0c5f3b8d21")


def derive_token(*parts: str) -> str:
    """A deterministic ClientRequestToken (36 characters; AWS wants 32-64).

    Derived from the secret, the rotation value and (for the master) the new password, so a
    re-run of the same rotation finds the version it staged before instead of staging another.
    UUIDv5 is a one-way hash: the token reveals nothing usable about a 32+ character random
    password.
    """
    return str(uuid.uuid5(_TOKEN_NAMESPACE, "\x1f".join(parts)))


def _refused(secret_arn: str, what: str, exc: botocore.exceptions.ClientError) -> SecretStoreError:
    """Secrets Manager's refusal as one message: the secret, the call, the API error."""
    error = exc.response.get("Error", {})
    return SecretStoreError(
        f"secret {secret_arn}: {what} failed: {error.get('Code', 'Unknown')}: "
        f"{error.get('Message', '')}"
    )


@dataclass(frozen=True)
class SecretVersion:
    version_id: str
    stages: tuple[str, ...]
    value: dict[str, Any] = field(repr=False)


class SecretStore:
    def __init__(self, region: str | None = None):
        self._client = boto3.client("secretsmanager", region_name=region)

    def _call(self, secret_arn: str, what: str, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self._client, method)(SecretId=secret_arn, **kwargs)
        except botocore.exceptions.ClientError as exc:
            raise _refused(secret_arn, what, exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise SecretStoreError(
                f"secret {secret_arn}: {what} failed: cannot reach Secrets Manager: {exc}"
            ) from None

    def stages(self, secret_arn: str) -> dict[str, list[str]]:
        """version id -> staging labels, for every labelled version of the secret."""
        described = self._call(secret_arn, "describe", "describe_secret")
        return {v: list(s) for v, s in described.get("VersionIdsToStages", {}).items() if s}

    def version_with(self, secret_arn: str, stage: str) -> str | None:
        return self.versions_with(secret_arn, stage)[0]

    def versions_with(self, secret_arn: str, *stages: str) -> list[str | None]:
        """The version holding each of `stages` (None: none does), from one describe call."""
        labelled = self.stages(secret_arn)
        return [next((v for v, s in labelled.items() if stage in s), None) for stage in stages]

    def read(
        self, secret_arn: str, stage: str = CURRENT, version_id: str | None = None
    ) -> SecretVersion | None:
        """The version holding `stage` (or the given version id); None if there is none."""
        kwargs: dict[str, Any] = (
            {"VersionId": version_id} if version_id else {"VersionStage": stage}
        )
        try:
            response = self._client.get_secret_value(SecretId=secret_arn, **kwargs)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                # Either the secret is missing (describe says so clearly) or no version
                # carries the label yet (a secret created without a value).
                self.stages(secret_arn)
                return None
            raise _refused(secret_arn, f"reading {version_id or stage}", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise SecretStoreError(
                f"secret {secret_arn}: cannot reach Secrets Manager: {exc}"
            ) from None
        text = response.get("SecretString")
        try:
            value = json.loads(text) if text is not None else None
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise SecretStoreError(
                f"secret {secret_arn}: version {response['VersionId']} is not a JSON object "
                "(expected the RDS secret shape: engine, host, port, username, password, dbname)"
            )
        return SecretVersion(response["VersionId"], tuple(response.get("VersionStages", [])), value)

    def stage_pending(self, secret_arn: str, token: str, value: dict[str, Any]) -> None:
        """Write `value` as a new version labelled AWSPENDING (moves the label if it was elsewhere).

        Secrets Manager makes the very first version of a secret AWSCURRENT as well.
        """
        self._call(
            secret_arn,
            "staging the new version",
            "put_secret_value",
            ClientRequestToken=token,
            SecretString=json.dumps(value, sort_keys=True),
            VersionStages=[PENDING],
        )

    def move_current(self, secret_arn: str, to_version: str, from_version: str | None) -> None:
        """Move AWSCURRENT (Secrets Manager moves AWSPREVIOUS to `from_version`)."""
        kwargs: dict[str, Any] = {"MoveToVersionId": to_version}
        if from_version:
            kwargs["RemoveFromVersionId"] = from_version
        self._call(
            secret_arn,
            "moving AWSCURRENT",
            "update_secret_version_stage",
            VersionStage=CURRENT,
            **kwargs,
        )

    def attach_label(self, secret_arn: str, label: str, version_id: str) -> None:
        """Attach a custom staging label to `version_id` (moving it off any other version)."""
        self._call(
            secret_arn,
            f"labelling version {version_id} {label}",
            "update_secret_version_stage",
            VersionStage=label,
            MoveToVersionId=version_id,
        )

    def promote(self, secret_arn: str, token: str) -> str | None:
        """Move AWSCURRENT to `token` (AWSPREVIOUS follows to the old one), drop AWSPENDING.

        Returns the version that was current before (None if `token` already was).
        """
        stages = self.stages(secret_arn)
        current = next((v for v, s in stages.items() if CURRENT in s), None)
        previous: str | None = None
        if current != token:
            self.move_current(secret_arn, token, current)
            previous = current
        if PENDING in stages.get(token, []):
            self._call(
                secret_arn,
                "clearing AWSPENDING",
                "update_secret_version_stage",
                VersionStage=PENDING,
                RemoveFromVersionId=token,
            )
        return previous
