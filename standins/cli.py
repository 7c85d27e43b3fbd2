"""`appdb-standins` (also `scripts/standins`): the local stand-ins, kept running for trying
the commands by hand.

    scripts/standins start    # MariaDB (TLS) + moto in the background, set up like a deployed
                              # stack; prints how to reach them
    . .standins/env           # AWS_ENDPOINT_URL, test credentials, APPDB_SECRET_ARN, ...
    scripts/standins rotate   # what `pulumi up` does after a new appdb:credentialsRotation
    scripts/standins status   # how to reach them again (exit 1 when they are not running)
    scripts/standins stop     # stops both and removes .standins/

`start` sets the stand-ins up as the first `pulumi up` leaves a stack: the database
`appdb`, a KMS key, the master secret in the RDS JSON shape (`appdb/<stack>/rds/master`) and
the `app` and `readonly` users with their secrets (`appdb/<stack>/rds/<role>`). The state
directory (default `.standins` in the current directory) holds the server's files, the
connection details (state.json, no password) and `env`, a file to source. No password is
printed: it is in the master secret, as on AWS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from standins.aws import FAKE_CREDENTIALS, aws_environment

CHECKOUT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = Path(".standins")
PROJECT = "appdb"
REGION = FAKE_CREDENTIALS["AWS_DEFAULT_REGION"]
ROLES = ("app", "readonly")
START_TIMEOUT = 120.0


@dataclass
class StandIns:
    """What `start` set up; written to <state dir>/state.json (never a password)."""

    pid: int  # the process keeping the stand-ins (`serve`)
    mariadb_pid: int
    stack: str
    host: str
    port: int
    user: str
    database: str
    ca_bundle: str
    aws_endpoint: str
    region: str
    secrets: dict[str, str]  # "master", "app", "readonly" -> ARN
    rotation: str = "initial"  # the stand-in for appdb:credentialsRotation
    rotations: int = 0

    @property
    def dsn(self) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"

    def environment(self) -> dict[str, str]:
        return {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "APPDB_SECRET_ARN": self.secrets["master"],
            "APPDB_APP_SECRET_ARN": self.secrets["app"],
            "APPDB_READONLY_SECRET_ARN": self.secrets["readonly"],
            "APPDB_CA_BUNDLE": self.ca_bundle,
        }


def _state_file(state_dir: Path) -> Path:
    return state_dir / "state.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load(state_dir: Path) -> StandIns | None:
    """The running stand-ins described in `state_dir`, or None (none, or no longer running)."""
    try:
        found = StandIns(**json.loads(_state_file(state_dir).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return found if _alive(found.pid) else None


def _save(state_dir: Path, standins: StandIns) -> None:
    staged = state_dir / "state.json.new"
    staged.write_text(json.dumps(asdict(standins), indent=2) + "\n", encoding="utf-8")
    exports = "".join(
        f"export {key}={shlex.quote(value)}\n" for key, value in standins.environment().items()
    )
    (state_dir / "env").write_text(
        "# Source this file (. .standins/env) to reach the stand-ins as the commands reach AWS.\n"
        + exports,
        encoding="utf-8",
    )
    staged.replace(_state_file(state_dir))  # last: its presence means "ready"


def describe(standins: StandIns, state_dir: Path) -> str:
    env_file = state_dir / "env"
    with contextlib.suppress(ValueError):
        env_file = env_file.resolve().relative_to(Path.cwd().resolve())
    shown_env = str(env_file) if env_file.is_absolute() else f"./{env_file}"
    rows = [
        (
            "MariaDB (TLS required)",
            f"{standins.host}:{standins.port}, database {standins.database}",
        ),
        ("  DSN (no password)", standins.dsn),
        ("  CA bundle", standins.ca_bundle),
        ("moto (AWS APIs)", f"{standins.aws_endpoint}, region {standins.region}"),
        ("  master secret", f"{standins.secrets['master']} (holds the password)"),
        *((f"  {role} secret", standins.secrets[role]) for role in ROLES),
        ("  rotation", f"{standins.rotation} ({standins.rotations} since start)"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"Stand-ins for stack '{standins.stack}' are running (state in {state_dir}):"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    lines += [
        f"To reach them from this shell:  . {shown_env}",
        "  (exports " + ", ".join(standins.environment()) + ")",
        "Stop them with:  scripts/standins stop",
    ]
    return "\n".join(lines)


# --- start / serve --------------------------------------------------------------------------


def start(state_dir: Path, stack: str) -> int:
    running = load(state_dir)
    if running:
        print("already running; nothing started.")
        print(describe(running, state_dir))
        return 0
    _remove_leftovers(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "standins.log"
    serve_command = [sys.executable, "-m", "standins.cli", "serve", "--stack", stack]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*serve_command, "--state-dir", str(state_dir.resolve())],
            cwd=CHECKOUT,  # this checkout's code, whatever the current directory
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command and the terminal's Ctrl-C
        )
    deadline = time.monotonic() + START_TIMEOUT
    while (standins := load(state_dir)) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.terminate()
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            print("standins: the stand-ins did not start:", *tail, sep="\n  ", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(describe(standins, state_dir))
    return 0


def serve(state_dir: Path, stack: str) -> int:
    """Start both stand-ins, set them up as a deployed stack, keep them until SIGTERM/SIGINT."""
    import logging

    from standins.aws import moto_server
    from standins.mariadb import MariaDBServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stopping.append(signum))
    with contextlib.ExitStack() as resources:
        server = resources.enter_context(MariaDBServer(base_dir=state_dir / "mariadb"))
        endpoint = resources.enter_context(moto_server())
        resources.enter_context(aws_environment(endpoint))
        assert server.process is not None
        standins = StandIns(
            pid=os.getpid(),
            mariadb_pid=server.process.pid,
            stack=stack,
            host=server.host,
            port=server.port,
            user=server.admin_user,
            database=PROJECT,
            ca_bundle=str(server.ca_path),
            aws_endpoint=endpoint,
            region=REGION,
            secrets={},
        )
        with server.connect() as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{PROJECT}`")  # RDS creates the initial database
        _deploy(standins, server.admin_password)
        _save(state_dir, standins)
        print(f"ready: {standins.dsn}, {endpoint}", flush=True)
        while not stopping:
            time.sleep(0.2)
        print(f"stopping (signal {stopping[0]})", flush=True)
    return 0


def _deploy(standins: StandIns, password: str) -> None:
    """What the first `pulumi up` leaves: KMS key, master secret, application users."""
    import boto3

    from rotation.app_users import apply_application_users

    prefix = f"{PROJECT}/{standins.stack}/rds"
    kms = boto3.client("kms", region_name=standins.region)
    key = kms.create_key(Description=f"{PROJECT}-{standins.stack} RDS and secrets")
    alias = f"alias/{PROJECT}-{standins.stack}-rds"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyMetadata"]["KeyId"])
    client = boto3.client("secretsmanager", region_name=standins.region)
    value = {
        "engine": "mysql",
        "host": standins.host,
        "port": standins.port,
        "username": standins.user,
        "password": password,
        "dbname": standins.database,
        "dbInstanceIdentifier": f"{PROJECT}-{standins.stack}",
    }
    standins.secrets["master"] = client.create_secret(
        Name=f"{prefix}/master", KmsKeyId=alias, SecretString=json.dumps(value)
    )["ARN"]
    for role in ROLES:  # created empty, as the stack creates them
        standins.secrets[role] = client.create_secret(Name=f"{prefix}/{role}", KmsKeyId=alias)[
            "ARN"
        ]
    apply_application_users(_users_request(standins))


def _users_request(standins: StandIns) -> Any:
    from rotation.app_users import ApplicationUsers, RoleEndpoint

    return ApplicationUsers(
        master_secret_arn=standins.secrets["master"],
        schema=standins.database,
        roles={
            role: RoleEndpoint(standins.secrets[role], standins.host, standins.port)
            for role in ROLES
        },
        rotation=standins.rotation,
        region=standins.region,
        ca_bundle=standins.ca_bundle,
        connect_deadline=30,
        test_deadline=10,
    )


# --- rotate / stop --------------------------------------------------------------------------


def rotate(state_dir: Path) -> int:
    """A new rotation value and what `pulumi up` then does: master password and both roles."""
    from rotation.app_users import apply_application_users
    from rotation.errors import RotationError
    from rotation.master import MasterRotation, rotate_master
    from rotation.secret_store import CURRENT, PREVIOUS, SecretStore

    standins = load(state_dir)
    if standins is None:
        print(f"standins: none running (no {state_dir}/state.json): start them first")
        return 1
    with aws_environment(standins.aws_endpoint):
        store = SecretStore(standins.region)

        def active() -> dict[str, str]:
            found = {}
            for name, arn in standins.secrets.items():
                version = store.read(arn, CURRENT)
                found[name] = str(version.value.get("username")) if version else "-"
            return found

        before = active()
        standins.rotations += 1
        standins.rotation = f"standins-{standins.rotations}"
        try:
            rotate_master(
                MasterRotation(
                    secret_arn=standins.secrets["master"],
                    rotation=standins.rotation,
                    region=standins.region,
                    ca_bundle=standins.ca_bundle,
                    connect_deadline=30,
                    test_deadline=10,
                )
            )
            apply_application_users(_users_request(standins))
        except RotationError as exc:
            print(f"standins: rotation failed: {exc}", file=sys.stderr)
            return 1
        _save(state_dir, standins)
        after = active()
        print(f"rotated to appdb:credentialsRotation = {standins.rotation} (as `pulumi up` does):")
        for name, arn in standins.secrets.items():
            current, previous = store.versions_with(arn, CURRENT, PREVIOUS)
            print(
                f"  {name:<8}  active {before[name]} -> {after[name]}  "
                f"AWSCURRENT {(current or '-')[:8]}  AWSPREVIOUS {(previous or '-')[:8]}"
            )
    return 0


def stop(state_dir: Path) -> int:
    try:
        recorded = StandIns(**json.loads(_state_file(state_dir).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        recorded = None
    if recorded is None and not state_dir.exists():
        print(f"no stand-ins running here (no {state_dir})")
        return 0
    if recorded is not None and _alive(recorded.pid):
        os.kill(recorded.pid, signal.SIGTERM)  # it stops MariaDB and moto, then exits
        deadline = time.monotonic() + 30
        while _alive(recorded.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    if recorded is not None:
        for pid in (recorded.pid, recorded.mariadb_pid):  # only if it did not stop by itself
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    _remove_leftovers(state_dir)
    print(f"stopped; {state_dir} removed")
    return 0


def _remove_leftovers(state_dir: Path) -> None:
    import shutil

    shutil.rmtree(state_dir, ignore_errors=True)


# --- command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="standins",
        description=(__doc__ or "").split("\n\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where the stand-ins keep their files (default: .standins)",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{start,status,rotate,stop}"
    )
    started = commands.add_parser(
        "start", parents=[common], help="start them in the background (or show them if running)"
    )
    started.add_argument(
        "--stack", default="local", help="names the secrets appdb/<stack>/rds/... (default: local)"
    )
    commands.add_parser("status", parents=[common], help="how to reach them; exit 1 if stopped")
    commands.add_parser("rotate", parents=[common], help="rotate every credential once")
    commands.add_parser("stop", parents=[common], help="stop them and remove the state directory")
    served = commands.add_parser("serve", parents=[common])  # what `start` runs, in the background
    served.add_argument("--stack", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state_dir: Path = args.state_dir
    if args.command == "start":
        return start(state_dir, args.stack)
    if args.command == "serve":
        return serve(state_dir, args.stack)
    if args.command == "rotate":
        return rotate(state_dir)
    if args.command == "stop":
        return stop(state_dir)
    running = load(state_dir)
    if running is None:
        print(f"no stand-ins running (no live process recorded in {state_dir})")
        return 1
    print(describe(running, state_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
