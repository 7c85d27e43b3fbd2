"""The provider's side: run a task where the stack says (the in-VPC function, or in-process),
invoking again until the work is done or the request's overall deadline passes.

With a function name the task runs in Lambda (boto3 `invoke`, a client created per call, so
nothing is kept on the pickled provider; `AWS_ENDPOINT_URL_LAMBDA` reaches a local stand-in).
Without one (the `direct` runner) the same handler runs in this process, against a deadline of
its own, so both runners share every line of the database work.

Limits (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): an invocation
ends after at most 15 minutes, and a synchronous invocation's event and answer are at most
6 MB each. Events here carry the resource's inputs (the migration map: about 100 bytes a
script) and answers the applied map and account names, far below that.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# The function's timeout (infra/runner.py): Lambda's maximum.
FUNCTION_TIMEOUT_SECONDS = 900
# Waits between invocations refused because the function is busy (reserved concurrency 1).
BUSY_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0)

Report = Callable[[str], None]


class RunnerError(Exception):
    """The one readable, secret-free reason the task did not complete."""


class _CutOff(Exception):
    """The invocation ended before answering (Lambda's timeout, or the answer never arrived):
    what it had sent to the database runs on; the next invocation waits for the lock."""


class _Busy(Exception):
    """Lambda refused the invocation: the function's one concurrent execution is taken."""


@dataclass(frozen=True)
class Runner:
    function: str | None  # the in-VPC function's name; None runs the task in this process
    region: str

    def invoke(self, event: dict[str, Any], deadline: float) -> dict[str, Any]:
        if self.function is None:
            return _invoke_here(event, deadline)
        return _invoke_lambda(self.function, self.region, event)

    @property
    def where(self) -> str:
        return f"function {self.function}" if self.function else "this process"


def _invoke_here(event: dict[str, Any], deadline: float) -> dict[str, Any]:
    from vpcrunner import handler

    class Context:
        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return max(1000, int((deadline - time.monotonic()) * 1000))

    # A JSON round trip, as through Lambda: what runs sees exactly what would travel.
    return handler.handle(json.loads(json.dumps(event)), Context())


def _invoke_lambda(function: str, region: str, event: dict[str, Any]) -> dict[str, Any]:
    import boto3
    import botocore.config
    import botocore.exceptions

    config = botocore.config.Config(
        # The answer can take as long as the function may run; keep the idle connection alive
        # meanwhile (a NAT or proxy on the way may drop a silent one).
        read_timeout=FUNCTION_TIMEOUT_SECONDS + 60,
        connect_timeout=10,
        tcp_keepalive=True,
        # Never retried by botocore: a retried invocation would run the work twice at once.
        retries={"total_max_attempts": 1},
    )
    client = boto3.client("lambda", region_name=region, config=config)
    try:
        response = client.invoke(
            FunctionName=function,
            InvocationType="RequestResponse",
            Payload=json.dumps(event).encode(),
        )
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        if code == "TooManyRequestsException":
            raise _Busy(error.get("Message", "")) from None
        raise RunnerError(
            f"cannot invoke the function {function}: {code}: {error.get('Message', '')}"
        ) from None
    except (
        botocore.exceptions.ReadTimeoutError,
        botocore.exceptions.ConnectionClosedError,
    ) as exc:
        raise _CutOff(f"no answer from the function ({type(exc).__name__})") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise RunnerError(f"cannot reach the Lambda API to invoke {function}: {exc}") from None
    body = response["Payload"].read()
    answer = json.loads(body) if body else None
    if response.get("FunctionError"):
        # https://docs.aws.amazon.com/lambda/latest/dg/troubleshooting-invocation.html
        detail = answer if isinstance(answer, dict) else {}
        message = str(detail.get("errorMessage", ""))
        if detail.get("errorType") == "Sandbox.Timedout" or "Task timed out" in message:
            raise _CutOff(f"Lambda ended the invocation: {message.split(' ', 2)[-1]}")
        raise RunnerError(
            f"the function {function} failed: {detail.get('errorType', 'error')}: "
            f"{message or 'no message'} (its log group has the details)"
        )
    if not isinstance(answer, dict) or "status" not in answer:
        raise RunnerError(f"the function {function} answered something unexpected")
    return answer


def run_task(
    runner: Runner,
    task: str,
    request: Mapping[str, Any],
    *,
    deadline_seconds: float,
    report: Report,
    options: Mapping[str, Any] | None = None,
    label: str = "",
) -> dict[str, Any]:
    """Invoke until the task answers `done` (or `snapshot_needed`: the caller's to handle);
    print progress through `report`. Raises RunnerError with the task's message otherwise."""
    deadline = time.monotonic() + deadline_seconds
    label = label or task
    cut_off = False  # an invocation of this run ended mid-work: its statements run on
    planned: list[str] | None = None  # the migrations pending when this run began
    busy = 0
    count = 0
    where = "not started"
    while True:
        if time.monotonic() >= deadline:
            raise RunnerError(
                f"not finished within the runner's deadline of {deadline_seconds:g}s "
                f"({where}); run `pulumi up` again to carry on from there"
            )
        count += 1
        event = {"task": task, "request": dict(request), "options": dict(options or {})}
        if cut_off:
            # Wait for the lock as long as the invocation may: the earlier packet may need it.
            event["options"]["lock_wait_seconds"] = FUNCTION_TIMEOUT_SECONDS
        try:
            answer = runner.invoke(event, deadline)
        except _Busy:
            pause = BUSY_BACKOFF_SECONDS[min(busy, len(BUSY_BACKOFF_SECONDS) - 1)]
            busy += 1
            report(
                f"{label}: the function is busy (one invocation at a time); retrying in {pause:g}s"
            )
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            continue
        except _CutOff as exc:
            cut_off = True
            report(
                f"{label}: invocation {count} ended before answering ({exc}); what it sent to "
                "the database runs on there, invoking again"
            )
            continue
        busy = 0
        for line in answer.get("log") or []:
            report(f"{label}: {line}")
        status = answer.get("status")
        if status in ("done", "snapshot_needed"):
            return answer
        if status == "failed":
            raise RunnerError(str(answer.get("error") or "the task failed without a message"))
        if status == "stopped":
            progress = answer.get("progress") or {}
            if planned is None:
                planned = list(answer.get("applied_now") or []) + list(
                    answer.get("remaining") or []
                )
            where = _where(progress, planned)
            report(f"{label}: invocation {count} stopped at its deadline, {where}; invoking again")
            continue
        if status == "lock_busy" and cut_off:
            progress = answer.get("progress")
            where = (
                f"{_where(progress, planned)} is still running on the server"
                if progress
                else "the previous session still holds the migration lock"
            )
            report(f"{label}: waiting for the migration lock: {where}")
            continue
        if status == "lock_busy":
            raise RunnerError(str(answer.get("error")))
        raise RunnerError(f"unexpected answer from {runner.where}: status {status!r}")


def _where(progress: Mapping[str, Any], planned: list[str] | None) -> str:
    script = str(progress.get("script", "?"))
    place = f"statement {progress.get('statement')} of {progress.get('statements_total')}"
    if planned and script in planned:
        return f"migration {planned.index(script) + 1} of {len(planned)} ({script}) at {place}"
    return f"{script} at {place}"
