"""Entry point the Pulumi CLI runs (`--policy-pack policy`): serve the pack's policies."""

from appdb_fsbp import PACK_NAME, policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name=PACK_NAME,
    policies=policies(),
    # Every control blocks the preview or update unless its own level says otherwise.
    enforcement_level=EnforcementLevel.MANDATORY,
)
