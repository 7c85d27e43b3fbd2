"""State written by earlier versions of the dynamic providers loads with today's.

The fixtures (tests/fixtures/provider_state/, see its README) are the inputs and outputs the
providers stored before their inputs were parsed into typed requests, captured from that
code. A stack deployed then must, after an upgrade, parse, show no change in preview, and still
show a real change as one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from infra.providers.migrations import SchemaMigrationsProvider
from infra.providers.rotation import ApplicationUsersProvider, MasterPasswordRotationProvider
from vpcrunner.requests import (
    ApplicationUsersRequest,
    MasterRotationRequest,
    MigrationRequest,
    normalise,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "provider_state"

CASES = {
    "schema_migrations": (SchemaMigrationsProvider, MigrationRequest),
    "master_rotation": (MasterPasswordRotationProvider, MasterRotationRequest),
    "application_users": (ApplicationUsersProvider, ApplicationUsersRequest),
}


def stored(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.mark.parametrize("name", CASES)
def test_stored_inputs_and_outputs_parse_into_the_typed_request(name: str) -> None:
    _, request_type = CASES[name]
    state = stored(name)
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(request_type)
        if f.default is not dataclasses.MISSING
    }
    for values in (state["inputs"], state["outputs"], state["refreshed_outputs"]):
        echoed = request_type.parse(values).as_inputs()
        # The echo is what the old provider stored for each input (floats as ints; a None the
        # wire format dropped; an input added since at its default), so a refresh or an update
        # writes the state in the same format.
        for key, value in echoed.items():
            assert normalise(state["outputs"].get(key, defaults.get(key))) == value, key


@pytest.mark.parametrize("name", CASES)
def test_a_stack_deployed_with_the_old_providers_previews_no_change(
    name: str, tmp_path: Path
) -> None:
    provider_type, _ = CASES[name]
    # The CA bundle the fixtures name was the stand-in's, gone since: `check` looks for the
    # file on the machine that runs the preview, so give it one, the same in state and inputs.
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    state = json.loads(
        (FIXTURES / f"{name}.json")
        .read_text()
        .replace(stored(name)["inputs"]["ca_bundle"], str(bundle))
    )
    provider = provider_type()
    # The program no longer passes the master's new password (it is generated where the
    # rotation runs): the new inputs are the old ones without it.
    news = {k: v for k, v in state["inputs"].items() if k != "new_password"}
    checked = provider.check(state["outputs"], news)
    assert checked.failures == []
    for outputs in (state["outputs"], state["refreshed_outputs"]):
        assert provider.diff(state["id"], outputs, checked.inputs).changes is False
    if state["refreshed_inputs"] is not None:
        assert (
            provider.diff(
                state["id"], state["refreshed_outputs"], state["refreshed_inputs"]
            ).changes
            is False
        )


def test_a_new_migration_still_shows_against_old_state() -> None:
    state = stored("schema_migrations")
    news = {**state["inputs"], "migrations": {**state["inputs"]["migrations"], "V9__new.sql": "c9"}}
    assert SchemaMigrationsProvider().diff(state["id"], state["outputs"], news).changes is True


def test_a_new_rotation_value_still_shows_against_old_state() -> None:
    master, users = stored("master_rotation"), stored("application_users")
    assert (
        MasterPasswordRotationProvider()
        .diff(master["id"], master["outputs"], {**master["inputs"], "rotation": "2027-01"})
        .changes
    )
    assert (
        ApplicationUsersProvider()
        .diff(users["id"], users["outputs"], {**users["inputs"], "rotation": "2027-01"})
        .changes
    )
