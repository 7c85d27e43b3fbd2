"""Helpers for tests of Secrets Manager secrets and of the dynamic providers as Pulumi runs them
(not fixtures: plain functions, imported explicitly)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from standins.mariadb import MariaDBServer

ROOT = Path(__file__).resolve().parent.parent


def rds_secret(
    server: MariaDBServer, username: str, password: str, dbname: str, **extra: Any
) -> dict[str, Any]:
    """A secret value in the standard RDS JSON shape, pointing at `server`."""
    return {
        "engine": "mysql",
        "host": server.host,
        "port": server.port,
        "username": username,
        "password": password,
        "dbname": dbname,
        **extra,
    }


def create_secret(value: dict[str, Any] | None = None, *, raw: str | None = None) -> str:
    """A new secret holding `value` as JSON (or the text `raw`), or no value at all; its ARN."""
    kwargs: dict[str, Any] = {"Name": f"test/{secrets.token_hex(6)}"}
    if raw is not None:
        kwargs["SecretString"] = raw
    elif value is not None:
        kwargs["SecretString"] = json.dumps(value)
    return boto3.client("secretsmanager").create_secret(**kwargs)["ARN"]


def put_secret(secret_arn: str, value: dict[str, Any]) -> None:
    """A new AWSCURRENT version holding `value` as JSON."""
    boto3.client("secretsmanager").put_secret_value(
        SecretId=secret_arn, SecretString=json.dumps(value)
    )


def run_in_fresh_interpreter(script: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """`script` run by a new Python in the project directory with nothing inherited (no AWS
    settings, no PYTHONPATH), as the provider host loads a serialised provider."""
    return subprocess.run(
        [sys.executable, "-c", script],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )


@contextmanager
def provider_host() -> Iterator[Any]:
    """Pulumi's Python provider host (`python -m pulumi.dynamic`), started as the engine starts
    it: in the project directory, with the environment (AWS_* from the `aws` fixture) but no
    PYTHONPATH. Yields a gRPC ResourceProvider stub connected to it."""
    import grpc
    from pulumi.runtime.proto import provider_pb2_grpc

    host = subprocess.Popen(
        [sys.executable, "-m", "pulumi.dynamic"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert host.stdout is not None
        port = int(host.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield provider_pb2_grpc.ResourceProviderStub(channel)
    finally:
        host.kill()
        host.wait(timeout=30)


def grpc_struct(values: dict[str, Any]) -> Any:
    """Properties as the engine sends them over gRPC (numbers become floats)."""
    import asyncio

    from pulumi.runtime import rpc

    return asyncio.run(rpc.serialize_properties(values, {}))
