"""The master credentials: a generated password and the Secrets Manager secret holding the
standard RDS secret JSON (engine, host, port, username, password, dbname, dbInstanceIdentifier).

The password is a Pulumi secret from creation on; the SecretVersion's value is built with
Output.json_dumps from secret inputs, so it stays secret in state, exports and logs.

Rotation: the password generated here is the instance's first password only, so it has no
keeper and a new `appdb:credentialsRotation` leaves it alone. Later passwords are generated
where the rotation runs, applied over SQL and published in the secret by infra/rotation.py
(Secrets Manager's protocol).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

# RDS forbids '/', '@', '"' and space in master passwords; these are the specials it accepts
# that also need no quoting in a shell or a DSN.
RDS_SAFE_SPECIALS = "!#$%^&*()-_=+[]{}<>:?"


@dataclass(frozen=True)
class CredentialsArgs:
    project: str
    environment: str
    username: str
    password_length: int
    recovery_window_days: int
    kms_key_arn: pulumi.Input[str]


class Credentials(pulumi.ComponentResource):
    username: pulumi.Output[str]
    password: pulumi.Output[str]  # secret
    secret: aws.secretsmanager.Secret
    secret_arn: pulumi.Output[str]
    secret_version: aws.secretsmanager.SecretVersion | None

    def __init__(
        self, name: str, args: CredentialsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("appdb:credentials:Credentials", name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)

        generated = random.RandomPassword(
            f"{name}-master-password",
            length=args.password_length,
            special=True,
            override_special=RDS_SAFE_SPECIALS,
            min_lower=1,
            min_upper=1,
            min_numeric=1,
            min_special=1,
            # No keeper: the instance's first password only. Rotated passwords never pass
            # through Pulumi (infra/rotation.py).
            opts=child,
        )
        self.username = pulumi.Output.from_input(args.username)
        self.password = pulumi.Output.secret(generated.result)
        self.secret = aws.secretsmanager.Secret(
            f"{name}-master-secret",
            # A name prefix, not a fixed name: the provider adds a unique suffix at creation, so
            # destroying and re-creating the stack (or replacing the secret, create before
            # delete) never meets the old name while Secrets Manager keeps it scheduled for
            # deletion for the recovery window ("a secret with this name is already scheduled
            # for deletion"). Commands find the name in the stack output `secretName`.
            name_prefix=f"{args.project}/{args.environment}/rds/master-",
            description=f"{args.project} {args.environment}: RDS MySQL master credentials",
            kms_key_id=args.kms_key_arn,
            recovery_window_in_days=args.recovery_window_days,
            opts=child,
        )
        self.secret_arn = self.secret.arn
        self.secret_version = None
        self.register_outputs({"secretArn": self.secret_arn, "username": self.username})

    def record_connection(
        self,
        *,
        host: pulumi.Input[str],
        port: pulumi.Input[int],
        dbname: pulumi.Input[str],
        instance_identifier: pulumi.Input[str],
    ) -> aws.secretsmanager.SecretVersion:
        """Store the standard RDS secret JSON once the instance exists (it needs the host)."""
        value = pulumi.Output.json_dumps(
            {
                "engine": "mysql",
                "host": host,
                "port": port,
                "username": self.username,
                "password": self.password,
                "dbname": dbname,
                "dbInstanceIdentifier": instance_identifier,
            }
        )
        # Written once. Credential rotation (infra/rotation.py) owns every later version; this
        # one must never be put back over a rotated password, hence:
        # - its own staging label INITIAL: Secrets Manager makes a secret's first version
        #   AWSCURRENT anyway, but were this resource ever written again the new version would
        #   take only INITIAL, never AWSCURRENT. The label also keeps the version from becoming
        #   "deprecated" (unlabelled) and deleted by Secrets Manager, which would make Pulumi
        #   re-create it (hashicorp/terraform-provider-aws#37302);
        # - ignore_changes: rotation moves AWSCURRENT/AWSPREVIOUS on and off this version, and
        #   a changed endpoint is published by rotation too, so neither is Pulumi's to correct.
        self.secret_version = aws.secretsmanager.SecretVersion(
            f"{self._name}-master-secret-value",
            secret_id=self.secret.id,
            secret_string=pulumi.Output.secret(value),
            version_stages=["INITIAL"],
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=["secret_string", "version_stages"]
            ),
        )
        return self.secret_version
