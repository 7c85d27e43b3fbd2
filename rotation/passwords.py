"""Passwords generated where they are set (never through Pulumi state)."""

from __future__ import annotations

import secrets
import string

# RDS-safe and shell/URL/JSON-friendly: no / @ " ' \ space or backtick.
ALPHABET = string.ascii_letters + string.digits + "-_.~!#%^*+="


def generate_password(length: int = 40) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))
