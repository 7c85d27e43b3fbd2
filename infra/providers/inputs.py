"""The edge of each dynamic provider: its inputs parsed once into a typed request
(vpcrunner.requests), their problems as Pulumi check failures, and input comparison for `diff`.

Plain functions with no state and no side effects at import time (Pulumi's provider host
imports the providers' modules, and so this one, when it unpickles a provider).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pulumi import dynamic

from vpcrunner.requests import UNKNOWN, InvalidInputs, normalise, resolve

__all__ = ["UNKNOWN", "changed_keys", "check_failures", "parsed", "project_path"]

R = TypeVar("R", covariant=True)


class Parses(Protocol[R]):
    def parse(self, inputs: Mapping[str, Any], /) -> R: ...


def parsed(
    request_type: Parses[R], props: Mapping[str, Any], error: Callable[[str], Exception]
) -> R:
    """The provider's inputs as its typed request. `check` has already refused bad inputs, so a
    problem here (e.g. state written by hand) is the provider's one readable error."""
    try:
        return request_type.parse(props)
    except InvalidInputs as problem:
        raise error(str(problem)) from None


def check_failures(problems: Iterable[tuple[str, str]]) -> list[dynamic.CheckFailure]:
    return [dynamic.CheckFailure(key, reason) for key, reason in problems]


def changed_keys(
    olds: Mapping[str, Any],
    news: Mapping[str, Any],
    keys: Iterable[str],
    defaults: Mapping[str, Any] | None = None,
) -> list[str]:
    """The keys whose values differ between the old state and the new inputs. A key missing on
    either side counts at its default: state written before an input existed had it so."""
    defaults = defaults or {}
    return [
        k
        for k in keys
        if normalise(olds.get(k, defaults.get(k))) != normalise(news.get(k, defaults.get(k)))
    ]


def project_path(path: str) -> Path:
    # Relative paths are relative to the project directory, which is the working directory of
    # both the Pulumi program and the provider host.
    return resolve(Path.cwd(), path)
