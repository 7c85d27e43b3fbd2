"""Checks of the stack's region, made at preview before any AWS resource is declared, and reported
together with every other invalid setting (infra/settings.py, `region_checks`):

- the region's regular availability zones, enough of them for appdb:availabilityZoneCount.
  Local Zones and Wavelength Zones are left out: DescribeAvailabilityZones lists the ones an
  account opted in to, and their names sort first (`us-east-1-atl-2a` before `us-east-1a`);
  the `zone-type` filter keeps availability zones only
  (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeAvailabilityZones.html);
- that RDS offers each instance class the stack runs for MySQL at the stack's major version in the
  region: `aws.rds.get_engine_version` resolves the major version to RDS's default minor
  (a partial `version` with `default_only`), then `aws.rds.get_orderable_db_instance` must find
  the class with gp3 storage. Without this, a class RDS does not offer fails at `pulumi up`,
  after the network and the key were created;
- with an existing VPC and the lambda runner, that the VPC exists and has both DNS attributes on:
  the runner's Secrets Manager endpoint uses private DNS, which needs enableDnsSupport and
  enableDnsHostnames (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVpcEndpoint.html);
  without them the endpoint fails at `pulumi up`, after the database was created.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.settings import RegionFacts, RegionRequest
from infra.tagging import tagged_provider

ENGINE = "mysql"


class AwsRegionChecks:
    """`region_checks` for load_settings: asks AWS through the stack's tagged provider, which it
    declares on first use (`provider` is then the stack's AWS provider)."""

    def __init__(self, project: str, environment: str) -> None:
        self.project = project
        self.environment = environment
        self._provider: aws.Provider | None = None

    @property
    def provider(self) -> aws.Provider:
        if self._provider is None:
            raise RuntimeError("the region was not checked: load_settings did not accept it")
        return self._provider

    def __call__(self, request: RegionRequest) -> RegionFacts:
        self._provider = tagged_provider(self.project, self.environment, request.region)
        invoke = pulumi.InvokeOptions(provider=self._provider)
        problems: list[str] = []
        zones: tuple[str, ...] = ()
        if request.zone_count is not None:
            names = regular_zones(invoke)
            if len(names) < request.zone_count:
                problems.append(
                    f"appdb:availabilityZoneCount = '{request.zone_count}': the region offers "
                    f"only {len(names)} available zones ({', '.join(names)})"
                )
            else:
                zones = tuple(names[: request.zone_count])
        versions: dict[str, str | Exception] = {}
        for key, instance_class, major in request.instance_classes:
            if major not in versions:
                versions[major] = _default_version(major, invoke)
            version = versions[major]
            if isinstance(version, Exception):
                problems.append(
                    f"appdb:engineVersion = {major!r}: RDS offers no MySQL {major} in "
                    f"{request.region} (aws.rds.get_engine_version: {_said(version)})"
                )
                continue
            refused = _refusal(instance_class, version, invoke)
            if refused is not None:
                problems.append(
                    f"appdb:{key} = {instance_class!r}: not offered for MySQL {major} "
                    f"({version}) with gp3 storage in {request.region} "
                    f"(aws.rds.get_orderable_db_instance: {_said(refused)}; list the offered "
                    "classes with `aws rds describe-orderable-db-instance-options --engine mysql`)"
                )
        if request.private_dns_vpc_id:
            problems.extend(
                _private_dns_problems(request.private_dns_vpc_id, request.region, invoke)
            )
        return RegionFacts(problems, zones)


def regular_zones(invoke: pulumi.InvokeOptions) -> list[str]:
    """The region's available, regular availability zones, sorted by name."""
    found = aws.get_availability_zones(
        state="available",
        filters=[
            aws.GetAvailabilityZonesFilterArgs(name="zone-type", values=["availability-zone"])
        ],
        opts=invoke,
    )
    return sorted(found.names)


def _said(error: Exception) -> str:
    """The provider's own words, first line only (the engine prefixes "invoke of ... failed")."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _default_version(major: str, invoke: pulumi.InvokeOptions) -> str | Exception:
    try:
        return aws.rds.get_engine_version(
            engine=ENGINE, version=major, default_only=True, opts=invoke
        ).version
    except Exception as error:  # reported as a problem of the setting, with the provider's words
        return error


def _refusal(instance_class: str, version: str, invoke: pulumi.InvokeOptions) -> Exception | None:
    try:
        aws.rds.get_orderable_db_instance(
            engine=ENGINE,
            engine_version=version,
            # preferred_instance_classes, not instance_class: several offerings of one class
            # (e.g. per storage type) then pick the first instead of failing as "multiple"
            # (internal/service/rds/orderable_instance_data_source.go).
            preferred_instance_classes=[instance_class],
            storage_type="gp3",
            opts=invoke,
        )
    except Exception as error:  # "no RDS DB Instance Classes match the criteria"
        return error
    return None


def _private_dns_problems(vpc_id: str, region: str, invoke: pulumi.InvokeOptions) -> list[str]:
    key = f"appdb:existingVpcId = {vpc_id!r}"
    try:
        vpc = aws.ec2.get_vpc(id=vpc_id, opts=invoke)
    except Exception as error:  # "no matching EC2 VPC found"
        return [f"{key}: not found in {region} (aws.ec2.get_vpc: {_said(error)})"]
    off = [
        name
        for name, on in (
            ("enableDnsSupport", vpc.enable_dns_support),
            ("enableDnsHostnames", vpc.enable_dns_hostnames),
        )
        if not on
    ]
    if not off:
        return []
    return [
        f"{key}: {' and '.join(off)} is off, and the runner's Secrets Manager endpoint needs "
        "private DNS, which needs both on (`aws ec2 modify-vpc-attribute --vpc-id "
        f"{vpc_id} --enable-dns-hostnames` and `--enable-dns-support`, one per call), or use "
        "appdb:runner: direct with a runner inside that VPC"
    ]
