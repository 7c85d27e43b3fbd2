"""IAM documents shared by the components."""

from __future__ import annotations

import json
from typing import Any


def service_trust_policy(service: str, source_account: str | None = None) -> str:
    """A role trust policy letting the AWS service principal `service` assume the role; with
    `source_account`, only on behalf of that account (no confused deputy)."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if source_account is not None:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": source_account}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, sort_keys=True)
