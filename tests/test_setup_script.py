"""scripts/setup on a machine that already has what it needs: it must leave the machine's own
services alone. Run on a copy of the project whose installers are stand-ins that record their
calls, so the test is quick and changes nothing on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDER = '#!/bin/sh\necho "{name} $*" >> "{log}"\n'


def _recorder(path: Path, log: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RECORDER.format(name=path.name, log=log))
    path.chmod(0o755)


def test_setup_leaves_a_running_system_mariadb_alone(tmp_path: Path) -> None:
    project = tmp_path / "project"
    for name in ("scripts/setup", "requirements.txt", "requirements-dev.txt", "pyproject.toml"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    calls = tmp_path / "calls.log"
    # A virtualenv that exists already, and installers that only record what they were asked.
    for tool in ("python", "pip"):
        _recorder(project / ".venv" / "bin" / tool, calls)
    stubs = tmp_path / "bin"
    for tool in ("service", "systemctl", "invoke-rc.d", "apt-get", "npm"):
        _recorder(stubs / tool, calls)
    assert shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists()  # installed here
    completed = subprocess.run(
        ["bash", str(project / "scripts" / "setup")],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"},
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    recorded = calls.read_text().splitlines() if calls.exists() else []
    services = {"service", "systemctl", "invoke-rc.d"}
    touched = [line for line in recorded if line.split()[0] in services]
    assert touched == [], "setup touched a system service: " + "; ".join(touched)
    assert not [line for line in recorded if line.startswith("apt-get")]  # nothing to install
    assert any(line.startswith("pip install") for line in recorded), recorded
