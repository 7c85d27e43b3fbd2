"""moto's AWS emulation as a local HTTP server, standing in for Secrets Manager, KMS and RDS.

Code under test reaches it the way it reaches AWS: boto3 clients that honour
AWS_ENDPOINT_URL (which is also how the dynamic providers find a local stand-in, since
boto3 inside a provider does not see Pulumi's `aws:endpoints` config).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from standins.mariadb import free_port

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer  # heavy: only where a server is started

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextmanager
def aws_environment(endpoint_url: str) -> Iterator[None]:
    """Point boto3 (in this process and its children) at the stand-in, with fake credentials."""
    saved = {k: os.environ.get(k) for k in [*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL"]}
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
