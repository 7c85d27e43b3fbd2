"""Input handling shared by the dynamic providers: checks, comparison and echoing of inputs.

Plain functions with no state and no side effects at import time (Pulumi's provider host
imports the providers' modules, and so this one, when it unpickles a provider).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from pulumi import dynamic

# Pulumi's marker for a value not known yet during preview (e.g. the endpoint of a new instance).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def normalise(value: Any) -> Any:
    # Numbers come back from Pulumi's wire format as floats: 3306 and 3306.0 are the same input.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    return value


def changed_keys(
    olds: Mapping[str, Any], news: Mapping[str, Any], keys: Iterable[str]
) -> list[str]:
    """The keys whose values differ between the old state and the new inputs."""
    return [k for k in keys if normalise(olds.get(k)) != normalise(news.get(k))]


def echoed_inputs(
    props: Mapping[str, Any], keys: Iterable[str], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """The inputs as outputs (a missing optional one at its default): Pulumi's default update
    would otherwise drop them, and `diff` compares the new inputs against the outputs."""
    return {key: normalise(props.get(key, defaults.get(key))) for key in keys}


def project_path(path: str) -> Path:
    # Relative paths are relative to the project directory, which is the working directory of
    # both the Pulumi program and the provider host.
    return Path(path) if Path(path).is_absolute() else Path.cwd() / path


def ca_bundle_path(ca_bundle: Any) -> str | None:
    """The `ca_bundle` input as a path to open (None: the system trust store)."""
    return str(project_path(str(ca_bundle))) if ca_bundle else None


def required_string_failures(
    news: Mapping[str, Any], keys: Iterable[str], *, secret_keys: Collection[str] = ()
) -> list[dynamic.CheckFailure]:
    """A failure per key that is not a non-empty string (unknown during preview is fine); the
    value of a key in `secret_keys` is not shown."""
    failures = []
    for key in keys:
        value = news.get(key)
        if value != UNKNOWN and (not isinstance(value, str) or not value):
            shown = "a non-empty string is required" if key in secret_keys else repr(value)
            failures.append(dynamic.CheckFailure(key, f"required string, got {shown}"))
    return failures


def port_failures(news: Mapping[str, Any]) -> list[dynamic.CheckFailure]:
    port = news.get("port")
    if port != UNKNOWN and not (
        isinstance(port, int | float) and float(port).is_integer() and 0 < port < 65536
    ):
        return [dynamic.CheckFailure("port", f"must be 1-65535, got {port!r}")]
    return []
