"""A local stand-in for AWS Lambda's Invoke API that runs a function's real code archive.

moto cannot run Lambda code without Docker, which these machines lack, and the runtime
interface emulator AWS publishes is a binary from outside the registries reachable here. So
this is the smallest honest stand-in: an HTTP server on the loopback interface implementing
`POST /2015-03-31/functions/{name}/invocations` (RequestResponse invocations,
https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html), reached by boto3 through
`AWS_ENDPOINT_URL_LAMBDA`. Each invocation runs the unpacked archive's handler in a fresh Python
that has only the archive's directory and boto3 (what the Lambda runtime provides) on its path,
with the function's environment, as Lambda does:

- the Python is the runtime's version (`python3.13`: a Python 3.13 on PATH or installed by
  pyenv, or `$APPDB_LAMBDA_PYTHON`); a machine without one runs the function under this
  Python, says so on stderr, and each invocation records the version that ran it;

- the function's timeout is enforced by killing the process, and answered as Lambda answers a
  timed-out invocation (status 200, `X-Amz-Function-Error: Unhandled`, errorType
  `Sandbox.Timedout`); an exception in the handler is answered the same way with its type;
- reserved concurrency 1: an invocation while another runs is refused with 429
  `TooManyRequestsException`, as Lambda refuses it;
- every event, answer and the function's output (its "log stream") is recorded, so tests can
  check that no secret ever travels.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from vpcrunner.archive import HANDLER, RUNTIME

# What the Lambda Python runtime puts beside a function's code: boto3 and its dependencies.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")

_BOOTSTRAP = r"""
import importlib, json, os, sys, time, traceback
# Only the function's code and the runtime's packages, as in Lambda (no site-packages).
runtime = os.environ["STANDIN_RUNTIME_PATH"].split(os.pathsep)
stdlib = [p for p in sys.path[1:] if "site-packages" not in p]
sys.path[:] = [os.environ["LAMBDA_TASK_ROOT"], *runtime, *stdlib]
deadline = time.monotonic() + float(os.environ["STANDIN_TIMEOUT"])

class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    aws_request_id = os.environ["STANDIN_REQUEST_ID"]

    @staticmethod
    def get_remaining_time_in_millis():
        return max(0, int((deadline - time.monotonic()) * 1000))

module, function = os.environ["_HANDLER"].rsplit(".", 1)
event = json.loads(sys.stdin.buffer.read())
try:
    answer = {"result": getattr(importlib.import_module(module), function)(event, Context())}
except Exception as exc:
    answer = {"error": {"errorMessage": str(exc), "errorType": type(exc).__name__,
                        "stackTrace": traceback.format_tb(exc.__traceback__)}}
answer["python"] = "%d.%d.%d" % sys.version_info[:3]
with open(os.environ["STANDIN_RESULT"], "w") as out:
    json.dump(answer, out)
"""


@dataclass
class Invocation:
    """One invocation as the stand-in saw it."""

    function: str
    event: bytes
    answer: bytes = b""
    function_error: str | None = None
    log: str = ""
    timed_out: bool = False
    python: str = ""  # the version of the Python that ran it, e.g. "3.13.0"


@dataclass
class Function:
    name: str
    code_dir: Path
    handler: str
    timeout: float
    environment: dict[str, str]
    interpreter: str  # the Python that runs it (see runtime_python)
    busy: threading.Lock = field(default_factory=threading.Lock)


class LambdaStandIn:
    """Functions deployed from archives, invoked over HTTP. Use `serving()`."""

    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.functions: dict[str, Function] = {}
        self.invocations: list[Invocation] = []
        self.runtime_dir = _runtime_packages(base_dir / "runtime")
        self._lock = threading.Lock()
        self.endpoint_url = ""

    def deploy(
        self,
        name: str,
        archive: Path,
        *,
        handler: str = HANDLER,
        runtime: str = RUNTIME,
        timeout: float = 900,
        environment: dict[str, str] | None = None,
    ) -> Path:
        """Unpack `archive` as the code of function `name` (replacing earlier code), to run
        under `runtime`'s Python (this Python, with a warning, where the machine has none)."""
        code_dir = self.base_dir / "functions" / name
        shutil.rmtree(code_dir, ignore_errors=True)
        code_dir.mkdir(parents=True)
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(code_dir)
        interpreter = runtime_python(runtime)
        if interpreter is None:
            interpreter = sys.executable
            print(
                f"lambda stand-in: no {runtime} on this machine (PATH, pyenv or "
                f"$APPDB_LAMBDA_PYTHON); {name} runs under Python {platform.python_version()}",
                file=sys.stderr,
            )
        self.functions[name] = Function(
            name, code_dir, handler, timeout, dict(environment or {}), str(interpreter)
        )
        return code_dir

    def invoke(self, name: str, event: bytes) -> tuple[int, dict[str, str], bytes]:
        """(HTTP status, headers, body) of an invocation, as Lambda would answer it."""
        function = self.functions.get(_function_name(name))
        if function is None:
            body = {"Type": "User", "message": f"Function not found: {name}"}
            return 404, {"x-amzn-ErrorType": "ResourceNotFoundException"}, json.dumps(body).encode()
        if not function.busy.acquire(blocking=False):
            body = {
                "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                "Type": "User",
                "message": "Rate Exceeded.",
            }
            return 429, {"x-amzn-ErrorType": "TooManyRequestsException"}, json.dumps(body).encode()
        try:
            record = self._run(function, event)
        finally:
            function.busy.release()
        with self._lock:
            self.invocations.append(record)
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        if record.function_error:
            headers["X-Amz-Function-Error"] = record.function_error
        return 200, headers, record.answer

    def _run(self, function: Function, event: bytes) -> Invocation:
        request_id = str(uuid.uuid4())
        work = Path(tempfile.mkdtemp(dir=self.base_dir, prefix="invocation-"))
        result = work / "result.json"
        bootstrap = work / "bootstrap.py"
        bootstrap.write_text(_BOOTSTRAP)
        environment = {
            "PATH": "/usr/bin:/bin",
            **function.environment,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(function.timeout)),
            "LAMBDA_TASK_ROOT": str(function.code_dir),
            "_HANDLER": function.handler,
            "STANDIN_RUNTIME_PATH": str(self.runtime_dir),
            "STANDIN_TIMEOUT": str(function.timeout),
            "STANDIN_REQUEST_ID": request_id,
            "STANDIN_RESULT": str(result),
        }
        process = subprocess.Popen(
            [function.interpreter, "-S", "-E", str(bootstrap)],
            cwd=function.code_dir,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        record = Invocation(function.name, event)
        try:
            output, _ = process.communicate(event, timeout=function.timeout)
        except subprocess.TimeoutExpired:
            # Lambda stops a timed-out invocation where it is: no cleanup, no answer.
            process.kill()
            output, _ = process.communicate()
            record.timed_out = True
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            message = f"{stamp} {request_id} Task timed out after {function.timeout:.2f} seconds"
            record.function_error = "Unhandled"
            record.answer = json.dumps(
                {"errorMessage": message, "errorType": "Sandbox.Timedout"}
            ).encode()
        record.log = output.decode(errors="replace")
        if not record.timed_out:
            answer = json.loads(result.read_text()) if result.is_file() else None
            record.python = answer.pop("python", "") if answer else ""
            if answer is None:
                record.function_error = "Unhandled"
                record.answer = json.dumps(
                    {
                        "errorMessage": f"RequestId: {request_id} Error: Runtime exited "
                        f"with status {process.returncode}",
                        "errorType": "Runtime.ExitError",
                    }
                ).encode()
            elif "error" in answer:
                record.function_error = "Unhandled"
                record.answer = json.dumps(answer["error"]).encode()
            else:
                record.answer = json.dumps(answer["result"]).encode()
        shutil.rmtree(work, ignore_errors=True)
        return record


def runtime_python(runtime: str) -> str | None:
    """A Python of a Lambda runtime's version on this machine (`python3.13`: 3.13), or None:
    `$APPDB_LAMBDA_PYTHON`, else `python3.13` on PATH, else one pyenv installed; each is asked
    its version, since a pyenv shim on PATH exists whether or not it can run."""
    version = runtime.removeprefix("python")
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates = [
        os.environ.get("APPDB_LAMBDA_PYTHON"),
        shutil.which(f"python{version}"),
        *map(str, sorted(pyenv.glob(f"versions/{version}.*/bin/python{version}"), reverse=True)),
    ]
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError:
            continue
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def _function_name(name: str) -> str:
    """A function name from a name, a partial or a full ARN (with an optional qualifier)."""
    match = re.search(r"function:([^:]+)", name)
    return match.group(1) if match else name


def _runtime_packages(directory: Path) -> Path:
    """A directory with (links to) boto3 and its dependencies, and nothing else."""
    directory.mkdir(parents=True, exist_ok=True)
    for module in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"{module} is not installed: run `make setup`")
        if spec.submodule_search_locations:
            source = Path(next(iter(spec.submodule_search_locations)))
        else:
            source = Path(spec.origin)
        target = directory / source.name
        if not target.exists():
            target.symlink_to(source)
    return directory


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        match = re.fullmatch(r"/2015-03-31/functions/([^/]+)/invocations", self.path.split("?")[0])
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if match is None:
            self._send(404, {"x-amzn-ErrorType": "UnknownOperationException"}, b"{}")
            return
        from urllib.parse import unquote

        standin: LambdaStandIn = getattr(self.server, "standin")  # noqa: B009
        status, headers, answer = standin.invoke(unquote(match.group(1)), body)
        self._send(status, headers, answer)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the stand-in records invocations itself


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: LambdaStandIn


@contextmanager
def serving() -> Iterator[LambdaStandIn]:
    """Run the stand-in on a free loopback port; boto3 reaches it through
    AWS_ENDPOINT_URL_LAMBDA, set here for this process (and its children) while it runs."""
    base_dir = Path(tempfile.mkdtemp(prefix="lambda-standin-"))
    standin = LambdaStandIn(base_dir)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.standin = standin
    standin.endpoint_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="lambda-standin", daemon=True)
    thread.start()
    saved = os.environ.get("AWS_ENDPOINT_URL_LAMBDA")
    os.environ["AWS_ENDPOINT_URL_LAMBDA"] = standin.endpoint_url
    try:
        yield standin
    finally:
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL_LAMBDA", None)
        else:
            os.environ["AWS_ENDPOINT_URL_LAMBDA"] = saved
        server.shutdown()
        server.server_close()
        shutil.rmtree(base_dir, ignore_errors=True)
