"""Errors raised by credential rotation. `str(error)` is one readable message with no secret."""

from __future__ import annotations


class RotationError(Exception):
    """Base class of every error rotation raises on purpose."""


class SecretStoreError(RotationError):
    """Secrets Manager refused or failed a call; names the secret and the API error."""


class RotationFailed(RotationError):
    """A rotation step failed; AWSCURRENT was not moved and the old credentials still work."""
