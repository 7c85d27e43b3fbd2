"""Stack config as the Pulumi CLI would hand it to the program.

Project defaults from the `config:` block of Pulumi.yaml (keys without a namespace belong to the
project, e.g. `port` -> `appdb:port`; namespaced keys such as `aws:region` are kept as they are),
then the stack file `Pulumi.<stack>.yaml` on top. `secure:` values cannot be decrypted here: they
become a placeholder and are marked secret.

Declared types are checked as the CLI checks them: `string`, `integer`, `boolean`, and the
structured `array` (with `items`) and `object` (Pulumi CLI 3.187+); a stack value of another type
is refused with the file and key named, before the program runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

SECRET_PLACEHOLDER = "[secret]"


class StackConfigError(ValueError):
    """A project or stack file that cannot be read; the message names the file."""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise StackConfigError(f"{path}: file not found") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StackConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StackConfigError(
            f"{path}: expected a mapping at the top level, got {type(data).__name__}"
        )
    return data


def project_name(project_dir: Path) -> str:
    data = _read_yaml(Path(project_dir) / "Pulumi.yaml")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise StackConfigError(f"{Path(project_dir) / 'Pulumi.yaml'}: no project `name`")
    return name


def _qualify(key: str, project: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def load_stack_config_with_secrets(
    project_dir: Path, stack: str
) -> tuple[dict[str, Any], frozenset[str]]:
    """("ns:key" -> value, keys whose value is secret), after the project defaults."""
    project_dir = Path(project_dir)
    project_file = project_dir / "Pulumi.yaml"
    project = project_name(project_dir)
    declared = _read_yaml(project_file).get("config") or {}
    if not isinstance(declared, dict):
        raise StackConfigError(f"{project_file}: `config` must be a mapping")

    values: dict[str, Any] = {}
    secrets: set[str] = set()
    types: dict[str, dict[str, Any]] = {}
    for key, spec in declared.items():
        full_key = _qualify(str(key), project)
        if isinstance(spec, dict):
            if "type" in spec:
                types[full_key] = spec
            if "value" in spec:
                values[full_key] = spec["value"]
            elif "default" in spec:
                values[full_key] = spec["default"]
            if spec.get("secret"):
                secrets.add(full_key)
        else:
            values[full_key] = spec

    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    stack_config = _read_yaml(stack_file).get("config") or {}
    if not isinstance(stack_config, dict):
        raise StackConfigError(f"{stack_file}: `config` must be a mapping")
    for key, value in stack_config.items():
        full_key = _qualify(str(key), project)
        if isinstance(value, dict) and set(value) == {"secure"}:
            values[full_key] = SECRET_PLACEHOLDER
            secrets.add(full_key)
        else:
            if full_key in types and not matches_type(value, types[full_key]):
                raise StackConfigError(
                    f"{stack_file}: {full_key} = {json.dumps(value)} is not of the type "
                    f"Pulumi.yaml declares ({describe_type(types[full_key])})"
                )
            values[full_key] = value
    return dict(sorted(values.items())), frozenset(secrets)


def matches_type(value: Any, spec: dict[str, Any]) -> bool:
    """Does a YAML value fit a declared config type? Scalars are as lenient as the CLI, which
    keeps them as text: an integer may be written "3", a boolean "true"."""
    kind = spec.get("type")
    if kind == "array":
        items = spec.get("items") or {}
        return isinstance(value, list) and all(matches_type(item, items) for item in value)
    if kind == "object":
        return isinstance(value, dict)
    if isinstance(value, dict | list):
        return False
    text = engine_value(value)
    if kind == "integer":
        return bool(text.strip().lstrip("-").isdigit())
    if kind == "boolean":
        return text.strip().lower() in ("true", "false")
    return True  # string: any scalar


def describe_type(spec: dict[str, Any]) -> str:
    if spec.get("type") == "array":
        return f"array of {describe_type(spec.get('items') or {})}"
    return str(spec.get("type"))


def load_stack_config(project_dir: Path, stack: str) -> dict[str, object]:
    """ "ns:key" -> value (YAML types) after the project defaults; raises StackConfigError."""
    return load_stack_config_with_secrets(project_dir, stack)[0]


def engine_value(value: Any) -> str:
    """The string form the CLI passes to the program: scalars as text, objects/lists as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return ""
    return str(value)
