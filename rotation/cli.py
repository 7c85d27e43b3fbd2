"""`appdb-rollback-credentials` (also `scripts/rollback-credentials`): roll credentials back to
their AWSPREVIOUS version, database side included. See docs/rotation.md.

    scripts/rollback-credentials master   --secret-id appdb/production/rds/master \\
        --ca-bundle certs/rds-global-bundle.pem [--region us-east-1]
    scripts/rollback-credentials app      --secret-id appdb/production/rds/app ...
    scripts/rollback-credentials readonly --secret-id appdb/production/rds/readonly ...

master: sets the previous password on the database over SQL, tests a login with it, then moves
AWSCURRENT back to the previous version. app/readonly: tests a login with the previous account
(untouched since the last rotation), then moves AWSCURRENT back. Running it again is refused
(it would restore what the first run removed): after a rollback, rotate forward. No password
is printed.
"""

from __future__ import annotations

import argparse
import sys

from rotation.errors import RotationError

ROLES = ("master", "app", "readonly")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollback-credentials",
        description=(__doc__ or "").split("\n\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("which", choices=ROLES, help="whose credentials: " + ", ".join(ROLES))
    parser.add_argument("--secret-id", required=True, help="secret name or ARN")
    parser.add_argument(
        "--region",
        default=None,
        help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's region)",
    )
    parser.add_argument(
        "--ca-bundle", default=None, help="PEM CA bundle to verify the server (RDS's bundle)"
    )
    parser.add_argument("--connect-deadline", type=float, default=60.0, metavar="SECONDS")
    return parser


def default_region() -> str | None:
    """The region boto3 would use: AWS_REGION / AWS_DEFAULT_REGION, then the profile's."""
    import boto3.session

    return boto3.session.Session().region_name


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    region = options.region or default_region()
    if not region:
        print(
            "rollback failed: no AWS region: pass --region (the stack's aws:region), or set "
            "AWS_REGION or AWS_DEFAULT_REGION",
            file=sys.stderr,
        )
        return 1
    from rotation.rollback import ROLLED_BACK, rollback_master, rollback_role

    rollback = rollback_master if options.which == "master" else rollback_role
    try:
        result = rollback(
            options.secret_id,
            region=region,
            ca_bundle=options.ca_bundle,
            connect_deadline=options.connect_deadline,
        )
    except RotationError as error:
        print(f"rollback failed: {error}", file=sys.stderr)
        return 1
    print(
        f"{options.which}: AWSCURRENT is version {result.version_id} again "
        f"(user {result.username}); version {result.rolled_back_version_id} is now AWSPREVIOUS, "
        f"labelled {ROLLED_BACK}: running it again is refused (the way on is a new rotation)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
