"""`appdb:credentials:MasterRotation`: the master secret's value and its rotation.

Rotating: `pulumi config set appdb:credentialsRotation <value>`, then `pulumi up`.

Who owns the master password, and why nothing fights over it:

- The RDS instance receives only the INITIAL password (infra/credentials.py) and ignores later
  changes to it (`ignore_changes=["password"]` in infra/database.py). Through the RDS API a new
  MasterUserPassword would wait for the maintenance window unless apply_immediately is set, and
  would race the rotation; over SQL the change takes effect at once and is tested before it is
  published.
- The secret's initial version (infra/credentials.py) carries its own staging label, INITIAL
  (Secrets Manager also makes a secret's first version AWSCURRENT) and ignores later changes
  to its value and labels. Should Pulumi ever write it again (a re-create), the new version
  takes only the INITIAL label and AWSCURRENT stays where rotation put it. A plain
  SecretVersion with `ignore_changes=["secret_string"]` would not be enough: once rotation
  leaves it without labels, Secrets Manager may delete it and Pulumi would re-create it as
  AWSCURRENT, putting the initial password back over a rotated one
  (hashicorp/terraform-provider-aws#37302). The label also keeps it from being deleted.
- Every later version belongs to this component's dynamic resource, which stages, tests and
  promotes each rotated value. A new rotation value (and only a new value) gives a new
  password, generated where the rotation runs (the in-VPC function, or the provider with the
  `direct` runner), as AWS's rotation functions do: it is never an input, an output, part of an
  invocation, or in state. The resource's first apply records the password the instance was
  created with as the current rotation value's, so nothing is rotated then.

Declared after the schema migrations (and depending on them), so a migration never reads the
secret while the password changes under it. Rotating twice with the same value does nothing:
the resource's diff compares the rotation value and finds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from infra.providers import rotation as provider


class MasterRotation(pulumi.ComponentResource):
    version_id: pulumi.Output[str]
    previous_version_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        rotation: str,
        secret_arn: pulumi.Input[str],
        host: pulumi.Input[str],
        port: pulumi.Input[int],
        region: str,
        password_length: int,
        ca_bundle: str | None,
        connect_deadline_seconds: int,
        runner: pulumi.Input[str] | None = None,
        runner_deadline_seconds: int = 3600,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("appdb:credentials:MasterRotation", name, None, opts)
        self.resource = provider.MasterPasswordRotation(
            f"{name}-rotated",
            {
                "secret_arn": secret_arn,
                "region": region,
                "host": host,
                "port": port,
                "rotation": rotation,
                "password_length": password_length,
                "ca_bundle": ca_bundle or None,
                "connect_deadline_seconds": connect_deadline_seconds,
                "runner": runner,
                "runner_deadline_seconds": runner_deadline_seconds,
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
        self.version_id = self.resource.version_id
        self.previous_version_id = self.resource.previous_version_id
        self.register_outputs(
            {"versionId": self.version_id, "previousVersionId": self.previous_version_id}
        )
