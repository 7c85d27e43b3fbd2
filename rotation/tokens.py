"""Deterministic version ids, so that re-running a rotation resumes it instead of repeating it."""

from __future__ import annotations

from rotation.secret_store import CURRENT, PENDING, SecretStore, SecretVersion, derive_token

MAX_REUSES = 50


def claim_version(
    store: SecretStore, secret_arn: str, parts: tuple[str, ...]
) -> tuple[str, SecretVersion | None]:
    """The version id this rotation uses, and the version already staged under it (if any).

    The id is derived from `parts`. If a version with that id exists but is neither current
    nor pending, an earlier rotation used the same value (e.g. config set back to an old
    value) and the version is history: a version can never be rewritten, so the next
    derived id is taken.
    """
    for attempt in range(MAX_REUSES):
        token = derive_token(*parts, *([str(attempt)] if attempt else []))
        existing = store.read(secret_arn, version_id=token)
        if existing is None:
            return token, None
        if CURRENT in existing.stages or PENDING in existing.stages:
            return token, existing
    raise RuntimeError(f"secret {secret_arn}: {MAX_REUSES} versions for the same rotation value")
