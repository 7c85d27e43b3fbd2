"""The master credentials: a generated password and the Secrets Manager secret holding the
standard RDS secret JSON (engine, host, port, username, password, dbname, dbInstanceIdentifier).

The password is a Pulumi secret from creation on; the SecretVersion's value is built with
Output.json_dumps from secret inputs, so it stays secret in state, exports and logs.
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
            opts=child,
        )
        self.username = pulumi.Output.from_input(args.username)
        self.password = pulumi.Output.secret(generated.result)
        self.secret = aws.secretsmanager.Secret(
            f"{name}-master-secret",
            name=f"{args.project}/{args.environment}/rds/master",
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
        self.secret_version = aws.secretsmanager.SecretVersion(
            f"{self._name}-master-secret-value",
            secret_id=self.secret.id,
            secret_string=pulumi.Output.secret(value),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return self.secret_version
