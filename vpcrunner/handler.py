"""The in-VPC function's entry point (`vpcrunner.handler.handle`, Lambda's Python runtime).

The function runs in the database's private subnets; its archive (vpcrunner.archive) holds this
package, `migrator/`, `rotation/`, PyMySQL, the migrations and the RDS CA bundle, and the
Lambda runtime provides boto3. It reaches Secrets Manager through the VPC's interface endpoint
(private DNS: boto3's default endpoint name resolves to the endpoint's addresses).

It stops starting new work well before Lambda ends the invocation: at most a fifth of its time,
or two minutes, before the end (https://docs.aws.amazon.com/lambda/latest/dg/
troubleshooting-invocation.html#troubleshooting-timeouts: a timed-out invocation is stopped
where it is). A statement already sent keeps running on the server; the next invocation waits
for the migration lock and carries on.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from vpcrunner import tasks

# The archive's root: the function's code directory (LAMBDA_TASK_ROOT) or, run in-process by
# the `direct` runner, the project directory. Both hold schema/ and the CA bundle.
ROOT = Path(__file__).resolve().parent.parent
MAX_MARGIN_SECONDS = 120.0


class LambdaContext(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


def soft_deadline(remaining_seconds: float) -> float:
    """time.monotonic() after which no new packet of migrations is started."""
    margin = min(MAX_MARGIN_SECONDS, remaining_seconds / 5)
    return time.monotonic() + remaining_seconds - margin


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda's handler: run the event's task (vpcrunner.tasks) and answer in JSON."""
    _log_engine_progress()
    remaining = context.get_remaining_time_in_millis() / 1000
    # In the function, lines go to its log stream too; in-process (the direct runner) only to
    # the answer, which the provider prints.
    in_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    invocation = tasks.Invocation(
        root=ROOT, stop_after=soft_deadline(remaining), log=_log if in_lambda else _quiet
    )
    return tasks.run(event, invocation)


def _log(line: str) -> None:
    # Standard output is the function's CloudWatch log stream. Lines are secret-free by
    # construction: names of scripts, accounts, versions, never a value of a secret.
    print(f"vpcrunner: {line}", flush=True)


def _quiet(_line: str) -> None:
    pass


def _log_engine_progress() -> None:
    """The engine's and rotation's INFO lines ("resuming at statement 4", retries) to the log."""
    engine = logging.getLogger("migrator")
    # Only in the function: run in-process (direct runner, tests) logging stays the caller's.
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and not engine.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        engine.addHandler(handler)
        engine.setLevel(logging.INFO)
        engine.propagate = False
