"""`appdb:schema:SchemaMigrations`: keeps the database's schema at the version in `schema/`.

Declared after the database: it depends on the RDS instance and on the secret's value, so the
first `pulumi up` migrates as soon as the instance accepts connections (the engine retries until
its connect deadline), and every later `pulumi up` applies what is new in `schema/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pulumi

from infra.providers import migrations as provider
from infra.settings import MigrationSettings
from migrator.discovery import load_migrations


class SchemaMigrations(pulumi.ComponentResource):
    """Applies the migrations in `settings.location` with the master credentials of the secret.

    The migration map (script -> checksum) is computed here, from the files, when the program
    runs; it is the dynamic resource's input, so `pulumi preview --diff` lists the scripts that
    are pending or changed. No credential passes through the program: the provider reads the
    secret when it applies.
    """

    applied_version: pulumi.Output[str]
    applied: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        name: str,
        *,
        settings: MigrationSettings,
        secret_arn: pulumi.Input[str],
        host: pulumi.Input[str],
        port: pulumi.Input[int],
        database_name: pulumi.Input[str],
        region: pulumi.Input[str],
        instance_identifier: pulumi.Input[str] | None = None,
        runner: pulumi.Input[str] | None = None,
        runner_deadline_seconds: int = 3600,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("appdb:schema:SchemaMigrations", name, None, opts)
        # `location` is relative to the project directory, the working directory of both the
        # program and Pulumi's provider host: the relative path is what the state records.
        checksums = load_migrations(Path.cwd() / settings.location).checksums()

        self.resource = provider.SchemaMigrations(
            f"{name}-applied",
            {
                "secret_arn": secret_arn,
                "region": region,
                "host": host,
                "port": port,
                "database": database_name,
                "location": settings.location,
                "migrations": checksums,
                "ca_bundle": settings.ca_bundle_path or None,
                "connect_deadline_seconds": settings.connect_deadline_seconds,
                "out_of_order": settings.out_of_order,
                "lock_wait_seconds": settings.lock_wait_seconds,
                "statement_lock_wait_seconds": settings.statement_lock_wait_seconds,
                "snapshot_before_migrate": settings.snapshot_before_migrate,
                "snapshot_retention": settings.snapshot_retention,
                "instance_identifier": instance_identifier,
                # The in-VPC function that applies them (None: this machine, `direct`).
                "runner": runner,
                "runner_deadline_seconds": runner_deadline_seconds,
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
        self.applied_version = self.resource.applied_version
        self.applied = self.resource.applied
        self.register_outputs({"applied_version": self.applied_version, "applied": self.applied})
