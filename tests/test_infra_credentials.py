"""What the master secret holds: the standard RDS secret JSON, wired to the real instance.

The plan is run with reveal_secrets (the mock engine has no real secrets: the password is the
mock's deterministic stand-in) to read the value the program would store; the masked plans in
test_infra_stacks.py show the same inputs are secret."""

from __future__ import annotations

import json

from infra_plans import ROOT, primary

from infra.credentials import RDS_SAFE_SPECIALS
from planner import SECRET_PLACEHOLDER, run_plan


def test_secret_value_is_the_standard_rds_json_of_the_primary():
    plan = run_plan(ROOT, "staging", reveal_secrets=True)
    version = plan.by_name("credentials-master-secret-value")
    wrapped = version.inputs["secretString"]
    assert set(wrapped) == {SECRET_PLACEHOLDER}  # still marked secret
    document = json.loads(wrapped[SECRET_PLACEHOLDER])
    db = primary(plan)
    identifier = db.inputs["identifier"]
    password = db.inputs["password"][SECRET_PLACEHOLDER]
    assert document == {
        "engine": "mysql",
        "host": document["host"],
        "port": 3306,
        "username": "appdb_master",
        "password": password,
        "dbname": "appdb",
        "dbInstanceIdentifier": identifier,
    }
    assert document["host"].startswith(f"{identifier}.") and document["host"].endswith(
        ".us-east-1.rds.amazonaws.com"
    )
    assert len(password) == 32  # the mock's stand-in honours the requested length


def test_rds_safe_specials_exclude_what_rds_forbids():
    assert not set(RDS_SAFE_SPECIALS) & set('/@" ')
    assert len(set(RDS_SAFE_SPECIALS)) >= 10
