"""Shared fixtures: a real MariaDB server with TLS and moto's AWS server, both started here."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from standins.aws import aws_environment, moto_server  # noqa: E402
from standins.mariadb import MariaDBServer  # noqa: E402


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    """One MariaDB per test session (TLS required, CA generated); tests take their own schema."""
    with MariaDBServer() as server:
        yield server


@pytest.fixture
def database(mariadb: MariaDBServer) -> str:
    """A fresh, empty schema on the session's server."""
    return mariadb.create_database()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws(moto_endpoint: str) -> Iterator[str]:
    """boto3 pointed at the moto server (AWS_ENDPOINT_URL and fake credentials set)."""
    with aws_environment(moto_endpoint):
        yield moto_endpoint
