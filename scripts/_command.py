"""What every `scripts/<name>` wrapper runs: the console command `appdb-<name>` declared in
pyproject.toml's [project.scripts], with this checkout's code and its `.venv`.

So `scripts/migrate ...` works as the docs write it, from any directory and without activating
anything: a wrapper started by another Python (`#!/usr/bin/env python3`) re-runs itself with
`.venv/bin/python`, which has the project's dependencies. The installed command
(`.venv/bin/appdb-migrate`, or `appdb-migrate` wherever the project is pip-installed) runs the
same function. Standard library only: nothing from the virtualenv is importable yet.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
_REEXECUTED = "APPDB_COMMAND_REEXECUTED"  # set once, so a broken .venv cannot loop


def entry_point(name: str) -> tuple[str, str]:
    """(module, function) of the console command `appdb-<name>` in pyproject.toml."""
    try:
        with (ROOT / "pyproject.toml").open("rb") as project_file:
            target = tomllib.load(project_file)["project"]["scripts"][f"appdb-{name}"]
    except (OSError, KeyError) as missing:
        sys.exit(f"scripts/{name}: {ROOT / 'pyproject.toml'} declares no appdb-{name} ({missing})")
    module, _, function = target.partition(":")
    return module, function


def _in_venv() -> bool:
    return VENV.exists() and Path(sys.prefix).resolve() == VENV.resolve()


def run(name: str) -> None:
    """Run `appdb-<name>` with this process's arguments; never returns."""
    python = VENV / "bin" / "python"
    if not _in_venv() and python.exists() and not os.environ.get(_REEXECUTED):
        os.environ[_REEXECUTED] = "1"
        os.execv(python, [str(python), *sys.argv])
    os.environ.pop(_REEXECUTED, None)
    # This checkout's packages first (not scripts/, which Python put at sys.path[0]).
    sys.path[:] = [
        str(ROOT),
        *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "scripts"),
    ]
    module, function = entry_point(name)
    try:
        imported = __import__(module, fromlist=[function])
    except ModuleNotFoundError as missing:
        sys.exit(
            f"scripts/{name}: {missing}: the project's environment is not set up. "
            "Run `make setup` in the checkout (it creates .venv), then run this again."
        )
    sys.exit(getattr(imported, function)())
