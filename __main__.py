"""appdb: production-grade RDS MySQL per environment.

Reads the stack's settings (validated before anything is declared) and wires the components.
What `pulumi up` does, in order: KMS key, network, credentials, database (primary, replicas),
the secret's value, the in-VPC runner function, schema migrations, master rotation,
application users.
"""

from pathlib import Path

import pulumi

from infra.app_users import ApplicationUsers
from infra.credentials import Credentials, CredentialsArgs
from infra.database import Database, DatabaseArgs
from infra.encryption import Encryption, EncryptionArgs
from infra.monitoring import MonitoredInstance, Monitoring
from infra.network import Network, NetworkArgs
from infra.preflight import AwsRegionChecks
from infra.rotation import MasterRotation
from infra.runner import DatabaseRunner, RunnerArgs
from infra.schema_migrations import SchemaMigrations
from infra.settings import PROJECT_NAMESPACE, load_settings

# Every setting, and what the region offers (regular zones, the instance classes for MySQL), is
# checked before any AWS resource; all problems come in one report (infra/settings.py).
region_checks = AwsRegionChecks(PROJECT_NAMESPACE, pulumi.get_stack())
settings = load_settings(region_checks)

# Every AWS resource goes through this provider, which adds the standard tags (infra/tagging.py).
aws_provider = region_checks.provider
with_provider = pulumi.ResourceOptions(providers=[aws_provider])

encryption = Encryption(
    "encryption",
    EncryptionArgs(
        project=settings.project,
        environment=settings.environment,
        region=settings.region,
        deletion_window_days=settings.kms_deletion_window_days,
        protect=settings.deletion_protection,
    ),
    opts=with_provider,
)

network = Network(
    "network",
    NetworkArgs(
        name_prefix=settings.name_prefix,
        vpc_cidr=settings.vpc_cidr,
        availability_zones=settings.availability_zones,
        existing_vpc_id=settings.existing_vpc_id,
        existing_subnet_ids=settings.existing_subnet_ids,
        database_port=settings.port,
        flow_log_retention_days=settings.flow_log_retention_days,
        kms_key_arn=encryption.key_arn,
    ),
    opts=with_provider,
)

credentials = Credentials(
    "credentials",
    CredentialsArgs(
        project=settings.project,
        environment=settings.environment,
        username=settings.master_username,
        password_length=settings.master_password_length,
        recovery_window_days=settings.secret_recovery_window_days,
        kms_key_arn=encryption.key_arn,
    ),
    opts=with_provider,
)

database = Database(
    "database",
    DatabaseArgs(
        settings=settings,
        kms_key_arn=encryption.key_arn,
        subnet_group_name=network.db_subnet_group_name,
        security_group_id=network.db_security_group_id,
        availability_zones=network.availability_zones,
        master_username=credentials.username,
        master_password=credentials.password,
    ),
    opts=with_provider,
)

# The secret's value needs the instance's address, so it is written once the instance exists.
secret_version = credentials.record_connection(
    host=database.address,
    port=database.port,
    dbname=database.name,
    instance_identifier=database.identifier,
)

pulumi.export("writerEndpoint", pulumi.Output.secret(database.address))
pulumi.export("port", database.port)
pulumi.export("databaseName", database.name)
pulumi.export("masterUsername", pulumi.Output.secret(credentials.username))
pulumi.export("secretArn", credentials.secret_arn)
# Secret names carry a generated suffix (unique per stack instance): commands take them from here,
# e.g. --secret-id "$(pulumi stack output secretName)".
pulumi.export("secretName", credentials.secret.name)
pulumi.export("kmsKeyArn", encryption.key_arn)
pulumi.export(
    "replicaEndpoints", pulumi.Output.secret(pulumi.Output.all(*database.replica_addresses))
)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("subnetIds", network.subnet_ids)
pulumi.export("databaseSecurityGroupId", network.db_security_group_id)
pulumi.export("applicationSecurityGroupId", network.app_security_group_id)

# --- The runner (infra/runner.py): where the database work runs --------------------------
# With `appdb:runner: lambda` (the default) a function in the database's subnets migrates and
# rotates, invoked through the Lambda API, so `pulumi up` works from any machine with AWS
# credentials; with `direct` the machine running `pulumi up` connects to the database itself.
runner = (
    DatabaseRunner(
        "runner",
        RunnerArgs(
            name_prefix=settings.name_prefix,
            region=settings.region,
            vpc_id=network.vpc_id,
            subnet_ids=network.subnet_ids,
            database_security_group_id=network.db_security_group_id,
            database_port=settings.port,
            kms_key_arn=encryption.key_arn,
            secret_arns=[credentials.secret_arn],
            log_retention_days=settings.log_retention_days,
            project_dir=Path.cwd(),
            migrations_location=settings.migrations.location,
            ca_bundle=settings.migrations.ca_bundle_path,
        ),
        opts=with_provider,
    )
    if settings.uses_lambda_runner
    else None
)
runner_function = runner.function_name if runner else None
runs_on = [runner.function] if runner else []

# --- Schema migrations (infra/schema_migrations.py; docs/migrations-resource.md) -------------
# Once the instance exists and the secret holds its credentials, bring the schema to the version
# in schema/. No credential passes through here: the provider reads the secret when it applies.
schema = SchemaMigrations(
    "schema",
    settings=settings.migrations,
    secret_arn=credentials.secret_arn,
    host=database.address,
    port=database.port,
    database_name=database.name,
    region=settings.region,
    instance_identifier=database.identifier,
    runner=runner_function,
    runner_deadline_seconds=settings.runner_deadline_seconds,
    # After the replicas too: creating a replica makes the primary unavailable for a while, and a
    # pre-migration snapshot of it then fails (migrator/snapshot.py also waits for `available`).
    depends_on=[database.instance, *database.replicas, secret_version, *runs_on],
)
pulumi.export("schemaVersion", schema.applied_version)

# --- Credential rotation (infra/rotation.py, infra/app_users.py; docs/rotation.md) -----------
# `pulumi config set appdb:credentialsRotation <value>` then `pulumi up` rotates the master
# password (a new one generated where the rotation runs, staged, set over SQL, tested,
# promoted in Secrets Manager) and flips each application role to its other account. Both run
# after the schema migrations, so nothing reads the master secret while its password changes;
# no password passes here.
master_rotation = MasterRotation(
    "master-rotation",
    rotation=settings.credentials_rotation,
    secret_arn=credentials.secret_arn,
    host=database.address,
    port=database.port,
    region=settings.region,
    password_length=settings.master_password_length,
    ca_bundle=settings.migrations.ca_bundle_path,
    connect_deadline_seconds=settings.migrations.connect_deadline_seconds,
    runner=runner_function,
    runner_deadline_seconds=settings.runner_deadline_seconds,
    depends_on=[database.instance, secret_version, schema, *runs_on],
)
application_users = ApplicationUsers(
    "application-users",
    project=settings.project,
    environment=settings.environment,
    rotation=settings.credentials_rotation,
    kms_key_arn=encryption.key_arn,
    recovery_window_days=settings.secret_recovery_window_days,
    master_secret_arn=credentials.secret_arn,
    writer_host=database.address,
    # The readonly secret points at the first read replica when the environment has one.
    reader_host=database.replica_addresses[0] if database.replica_addresses else None,
    port=database.port,
    schema=database.name,
    region=settings.region,
    ca_bundle=settings.migrations.ca_bundle_path,
    connect_deadline_seconds=settings.migrations.connect_deadline_seconds,
    runner=runner,
    runner_deadline_seconds=settings.runner_deadline_seconds,
    depends_on=[schema, master_rotation],
    opts=with_provider,
)
pulumi.export("appSecretArn", application_users.secret_arns["app"])
pulumi.export("readonlySecretArn", application_users.secret_arns["readonly"])
pulumi.export("appSecretName", application_users.secret_names["app"])
pulumi.export("readonlySecretName", application_users.secret_names["readonly"])

# --- Monitoring (infra/monitoring.py; README "Monitoring") -----------------------------------
# The seed's Prometheus alerts as CloudWatch alarms per instance, RDS event subscriptions, one
# encrypted SNS topic for all notifications, one dashboard.
monitoring = Monitoring(
    "monitoring",
    settings=settings,
    kms_key_arn=encryption.key_arn,
    instances=[
        MonitoredInstance("primary", database.instance, settings.instance_class, False),
        *(
            MonitoredInstance(f"replica-{n}", replica, settings.replica_instance_class, True)
            for n, replica in enumerate(database.replicas, start=1)
        ),
    ],
    parameter_group_names=[
        database.parameter_group.name,
        *([database.replica_groups[0].name] if database.replica_groups else []),
    ],
    opts=with_provider,
)
pulumi.export("alarmTopicArn", monitoring.topic_arn)
pulumi.export("dashboardUrl", monitoring.dashboard_url)
if runner is not None:
    pulumi.export("runnerFunctionName", runner.function_name)
