"""The appdb schema migration engine: plain Python (no Pulumi), MySQL 8 / MariaDB 10.11.

Public API: see docs/migrations.md. Modules: discovery (files -> ordered migrations),
splitter (mysql-client statement splitting), connection (verified TLS + retry),
secrets (Secrets Manager), history (the history table), lock (GET_LOCK), engine (Migrator),
snapshot (pre-migration RDS snapshot).
"""
