"""The local rehearsal (`make rehearse`) runs end to end against its own stand-ins."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from migrator.discovery import load_migrations

ROOT = Path(__file__).resolve().parent.parent


def test_rehearsal_applies_the_schema_then_finds_nothing_to_do() -> None:
    # The offline plans have their own tests; skip them here to keep this one quick.
    completed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "rehearse"), "--no-plan"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    rows = {line.split()[1]: line.split()[2] for line in out.splitlines() if ".sql " in line}
    expected = load_migrations(ROOT / "schema").checksums()
    assert rows == dict.fromkeys(expected, "applied"), out
    assert "nothing to do: every migration is applied (changes=False)" in out
    assert '"password": "********"' in out
    assert "no password appeared in this output" in out
    # The lambda runner step: the providers invoked the function (on the Lambda stand-in).
    lambda_part = out.split("== Lambda runner", 1)[1]
    assert "schema migrations: applied V3__session_routines.sql" in lambda_part
    assert "schema `appdb_lambda` at version 3" in lambda_part
    tasks = [line.split()[1:3] for line in lambda_part.splitlines() if line[:3].strip().isdigit()]
    expected_tasks = ["migrate", "master.read", "master.rotate", "users.apply"]
    assert tasks == [[task, "done"] for task in expected_tasks]
    assert "passwords in any event, answer or function log: 0" in lambda_part
