"""Credential rotation for appdb: plain Python (no Pulumi), MySQL 8 / MariaDB 10.11.

- rotation.master: the master password, rotated with Secrets Manager's protocol
  (createSecret / setSecret / testSecret / finishSecret) over SQL.
- rotation.app_users: least-privilege application users (`app`, `readonly`), two
  alternating accounts per role, passwords generated here and written straight to
  Secrets Manager; grants declared in rotation.grants and repaired on every apply.
- rotation.rollback: put AWSPREVIOUS back (secret and database) after a bad rotation.

See docs/rotation.md.
"""
