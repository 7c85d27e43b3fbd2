"""Runs a Pulumi program under the SDK's mock engine and records what it declares.

Executed as a script in a subprocess by planner.run_plan (one program per process: the Pulumi
runtime keeps global state):  python planner/engine.py REQUEST.json RESULT.json

It imports nothing from this repository, so it can run the program of any checkout (the
request's project_dir) without mixing that checkout's modules with this one's.

Mock values are derived from resource types and names by SHA-256, never from randomness or time,
so the same program and config always give byte-identical results.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import runpy
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

ACCOUNT_ID = "123456789012"
SECRET = "[secret]"
UNKNOWN = "[unknown]"
DYNAMIC_PROVIDER = "[dynamic provider code]"

_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
_ASSET_SIG = "c44067f5952c0a294b673a41bacd8c17"
_ARCHIVE_SIG = "0def7320c3a5731c473e5ecbe6d01bc7"
_OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
_UNKNOWN_VALUE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def plain(value: Any, reveal: bool = False) -> Any:
    """A JSON value from the engine's wire form: secrets masked, references as URNs.

    With `reveal` (tests only: under mocks there are no real secrets) a secret becomes
    {"[secret]": value} so a test can check what the program would store.
    """
    if isinstance(value, dict):
        sig = value.get(_SIG)
        if sig == _SECRET_SIG:
            return {SECRET: plain(value.get("value"), reveal)} if reveal else SECRET
        if sig == _RESOURCE_SIG:
            return value.get("urn", "")
        if sig == _OUTPUT_SIG:
            if value.get("secret"):
                return SECRET
            return plain(value["value"], reveal) if "value" in value else UNKNOWN
        if sig in (_ASSET_SIG, _ARCHIVE_SIG):
            return {k: plain(v, reveal) for k, v in value.items() if k != _SIG}
        return {k: plain(v, reveal) for k, v in value.items() if k != "__defaults"}
    if isinstance(value, list):
        return [plain(v, reveal) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value == _UNKNOWN_VALUE:
        return UNKNOWN
    return value


def _inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    # A dynamic resource's pickled provider is large and not stable across interpreter runs.
    if "__provider" in inputs:
        inputs["__provider"] = DYNAMIC_PROVIDER
    return inputs


def _resolved(value: Any) -> Any:
    """JSON-able form of a resolved stack output."""
    if isinstance(value, dict):
        return {str(k): _resolved(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_resolved(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def run(request: dict[str, Any]) -> dict[str, Any]:
    import pulumi
    from google.protobuf import json_format
    from pulumi.runtime import mocks as pulumi_mocks
    from pulumi.runtime.settings import get_root_resource
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    project_dir = Path(request["project_dir"]).resolve()
    region = request["config"].get("aws:region", "us-east-1")
    disabled_defaults = set(
        json.loads(request["config"].get("pulumi:disable-default-providers", "[]"))
    )
    # The engine refuses resources and invokes that fall back to a disabled default provider.
    problems: list[str] = []
    reveal = bool(request.get("reveal_secrets"))
    scope = f"{request['project']}/{request['stack']}"  # mock ids differ per stack, like real ones

    def uses_disabled_default(token: str, provider: str) -> bool:
        package = token.split(":", 1)[0]
        return not provider and (package in disabled_defaults or "*" in disabled_defaults)

    class DeterministicMocks(pulumi_mocks.Mocks):
        def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict]:
            return mock_resource(args.typ, args.name, dict(args.inputs), region, scope)

        def call(self, args: pulumi_mocks.MockCallArgs) -> dict:  # type: ignore[override]
            if uses_disabled_default(args.token, args.provider):
                raise RuntimeError(
                    f"invoke {args.token} uses the default provider, which "
                    "pulumi:disable-default-providers disables"
                )
            try:
                return mock_call(args.token, dict(args.args), region)
            except InvokeFailure as failure:
                # How the engine reports a provider's failed invoke: the SDK raises with it.
                return {}, [("", str(failure))]  # type: ignore[return-value]

    lock = threading.Lock()
    recorded: list[dict[str, Any]] = []

    class RecordingMonitor(pulumi_mocks.MockMonitor):
        def RegisterResource(self, request: Any) -> Any:
            response = super().RegisterResource(request)
            if request.type == "pulumi:pulumi:Stack":
                return response
            if request.custom and uses_disabled_default(request.type, request.provider):
                problems.append(
                    f"{request.type} {request.name!r} uses the default provider, which "
                    "pulumi:disable-default-providers disables"
                )
            entry = {
                "urn": response.urn,
                "type": request.type,
                "name": request.name,
                "parent": request.parent or None,
                "custom": bool(request.custom),
                "inputs": _inputs(plain(json_format.MessageToDict(request.object), reveal)),
                "options": {
                    "delete_before_replace": bool(request.deleteBeforeReplace),
                    "depends_on": sorted(set(request.dependencies)),
                    "ignore_changes": sorted(request.ignoreChanges),
                    "protect": bool(request.protect),
                    "provider": request.provider.rsplit("::", 1)[0] if request.provider else None,
                    "providers": {
                        k: v.rsplit("::", 1)[0] for k, v in sorted(request.providers.items())
                    },
                    "replace_on_changes": sorted(request.replaceOnChanges),
                    "retain_on_delete": bool(request.retainOnDelete),
                    "additional_secret_outputs": sorted(request.additionalSecretOutputs),
                },
            }
            with lock:
                recorded.append(entry)
            return response

    config = {k: str(v) for k, v in request["config"].items()}
    mocks = DeterministicMocks()
    pulumi.runtime.set_mocks(
        mocks,
        project=request["project"],
        stack=request["stack"],
        preview=False,
        monitor=RecordingMonitor(mocks),
    )
    pulumi.runtime.set_all_config(config, request.get("secret_keys", []))

    os.chdir(project_dir)
    sys.path.insert(0, str(project_dir))

    def program() -> None:
        runpy.run_path(str(project_dir / "__main__.py"), run_name="__main__")

    error: dict[str, str] | None = None
    try:
        _sync_await(run_pulumi_func(program))
    except BaseException as exc:  # reported to the caller
        error = {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": _program_traceback(exc, project_dir),
        }
    if error is None and problems:
        error = {
            "type": "DefaultProviderError",
            "message": "\n".join(sorted(problems)),
            "traceback": "",
        }

    outputs: dict[str, Any] = {}
    root = get_root_resource()
    if error is None and root is not None:
        for key, value in sorted(getattr(root, "outputs", {}).items()):
            output = pulumi.Output.from_input(value)
            if _sync_await(output.is_secret()):
                outputs[key] = SECRET
            else:
                outputs[key] = _resolved(_sync_await(output.future()))
    return {"error": error, "resources": recorded, "outputs": outputs}


def _program_traceback(exc: BaseException, project_dir: Path) -> str:
    """The program's own frames only (no engine internals), paths relative to the project."""
    frames = [
        f"{Path(f.filename).relative_to(project_dir)}:{f.lineno} in {f.name}"
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename.startswith(str(project_dir) + os.sep) and "site-packages" not in f.filename
    ]
    return "\n".join(frames)


# --- mock provider behaviour -------------------------------------------------------------------


def mock_resource(
    typ: str, name: str, inputs: dict[str, Any], region: str, scope: str
) -> tuple[str, dict]:
    h = digest(scope, typ, name)
    state = dict(inputs)
    if typ.startswith("pulumi:providers:"):
        return f"{name}-provider", state
    module = typ.split(":")[1].split("/")[0] if ":" in typ else ""
    resource_id = f"{module or 'res'}-{h[:17]}"

    if typ == "random:index/randomId:RandomId":
        size = int(inputs.get("byteLength", 4))
        hex_value = h[: 2 * size]
        state.update(hex=hex_value, dec=str(int(hex_value, 16)), b64Url=hex_value, b64Std=hex_value)
        return hex_value, state
    if typ == "random:index/randomPassword:RandomPassword":
        length = int(inputs.get("length", 32))
        fake = ("Mock" + h)[:length]
        state.update(result=fake, bcryptHash="$2a$10$" + h[:53])
        return "none", state
    if typ.startswith("random:"):
        return h[:16], state

    if "name" not in state and "namePrefix" in state:
        # like the provider's name_prefix: the prefix and a 26-character unique id
        state["name"] = f"{state['namePrefix']}{h[:26]}"
    if "name" not in state and not typ.startswith("aws:ec2/") and not typ.startswith("aws:vpc/"):
        state["name"] = f"{name}-{h[:7]}"  # like Pulumi's auto-naming
    arn_prefix = f"arn:aws:{module}:{region}:{ACCOUNT_ID}"
    if typ == "aws:kms/key:Key":
        key_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        state.update(keyId=key_id, arn=f"{arn_prefix}:key/{key_id}")
        return key_id, state
    if typ == "aws:kms/alias:Alias":
        state["arn"] = f"{arn_prefix}:{state['name']}"
        return str(state["name"]), state
    if typ == "aws:rds/instance:Instance":
        identifier = str(inputs.get("identifier") or f"{name}-{h[:7]}")
        port = int(inputs.get("port") or 3306)
        address = f"{identifier}.c{h[:10]}.{region}.rds.amazonaws.com"
        state.update(
            identifier=identifier,
            address=address,
            endpoint=f"{address}:{port}",
            port=port,
            arn=f"{arn_prefix}:db:{identifier}",
            resourceId=f"db-{h[:26].upper()}",
        )
        return identifier, state
    if typ == "aws:sns/topic:Topic":
        state["arn"] = f"{arn_prefix}:{state['name']}"
        return state["arn"], state
    if typ == "aws:secretsmanager/secret:Secret":
        state["arn"] = f"{arn_prefix}:secret:{state['name']}-{h[:6]}"
        return state["arn"], state
    if typ == "aws:cloudwatch/logGroup:LogGroup":
        state["arn"] = f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{state['name']}"
        return str(state["name"]), state
    if typ == "aws:iam/role:Role":
        state["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:role/{state['name']}"
        return str(state["name"]), state
    if typ in (
        "aws:rds/parameterGroup:ParameterGroup",
        "aws:rds/optionGroup:OptionGroup",
        "aws:rds/subnetGroup:SubnetGroup",
    ):
        state["arn"] = f"{arn_prefix}:{typ.split(':')[-1].lower()}:{state['name']}"
        return str(state["name"]), state
    if typ.startswith("aws:ec2/") or typ.startswith("aws:vpc/"):
        prefix = {
            "aws:ec2/vpc:Vpc": "vpc",
            "aws:ec2/subnet:Subnet": "subnet",
            "aws:ec2/securityGroup:SecurityGroup": "sg",
            "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg",
            "aws:ec2/routeTable:RouteTable": "rtb",
            "aws:ec2/flowLog:FlowLog": "fl",
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "sgr",
            "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "sgr",
        }.get(typ, "res")
        resource_id = f"{prefix}-{h[:17]}"
        state["arn"] = f"arn:aws:ec2:{region}:{ACCOUNT_ID}:{prefix}/{resource_id}"
        return resource_id, state
    state.setdefault("arn", f"{arn_prefix}:{resource_id}")
    return resource_id, state


# Available zones per region as AWS reports them to most accounts (us-west-1 has two).
ZONE_LETTERS = {
    "us-east-1": "abcdef",
    "us-east-2": "abc",
    "us-west-1": "ac",
    "us-west-2": "abcd",
    "eu-west-1": "abc",
    "eu-central-1": "abc",
}
# Zones that are not availability zones, as DescribeAvailabilityZones lists them to an account
# that opted in to them: a Local Zone and a Wavelength Zone (their names sort before the regular
# zones'). Only the `zone-type` filter leaves them out.
OTHER_ZONES = {
    "us-east-1": [
        ("us-east-1-atl-2a", "use1-atl2-az1", "us-east-1-atl-2", "local-zone"),
        ("us-east-1-wl1-bos-wlz-1", "use1-wl1-bos-wlz1", "us-east-1-wl1", "wavelength-zone"),
    ],
    "us-west-2": [("us-west-2-lax-1a", "usw2-lax1-az1", "us-west-2-lax-1", "local-zone")],
}

# RDS for MySQL as DescribeDBEngineVersions (default versions) and
# DescribeOrderableDBInstanceOptions report it, reduced to what the program asks: the default
# minor version of each major, and the instance class families offered for MySQL (after the
# instance class support table, https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/
# Concepts.DBInstanceClass.Support.html). A class not listed here is refused, as the provider
# refuses a class AWS does not offer.
MYSQL_DEFAULT_VERSIONS = {"8.0": "8.0.43", "8.4": "8.4.6"}
_SIZES = ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge")
MYSQL_CLASSES = frozenset(
    [f"db.{f}.{s}" for f in ("t3", "t4g") for s in ("micro", "small", "medium", "large")]
    + [f"db.{f}.{s}" for f in ("t3", "t4g") for s in ("xlarge", "2xlarge")]
    + [
        f"db.{f}.{s}"
        for f in (
            "m5",
            "m5d",
            "m6g",
            "m6gd",
            "m6i",
            "m7g",
            "r5",
            "r5b",
            "r6g",
            "r6gd",
            "r6i",
            "r7g",
        )
        for s in _SIZES
    ]
)


class InvokeFailure(Exception):
    """A look-up the real provider would answer with an error (no match)."""


def _zones(region: str, args: dict[str, Any]) -> dict[str, Any]:
    letters = ZONE_LETTERS.get(region, "abc")
    zones = [
        (
            f"{region}{c}",
            f"{region[:3]}{region.split('-')[-1]}-az{i + 1}",
            region,
            "availability-zone",
        )
        for i, c in enumerate(letters)
    ] + OTHER_ZONES.get(region, [])
    for spec in args.get("filters") or []:
        if spec.get("name") == "zone-type":
            zones = [z for z in zones if z[3] in spec.get("values", [])]
    zones.sort()
    return {
        "id": region,
        "names": [z[0] for z in zones],
        "zoneIds": [z[1] for z in zones],
        "groupNames": [z[2] for z in zones],
        "state": args.get("state", "available"),
    }


# Existing VPCs, as the stand-in account has them: any well-formed id is a VPC with DNS support
# and hostnames on (what private DNS needs), except this one, whose hostnames are off (the
# EC2 default for a VPC created by hand), and ids ending in "dead", which do not exist.
VPC_WITHOUT_DNS_HOSTNAMES = "vpc-0000000000000d115"


def _vpc(args: dict[str, Any], region: str) -> dict[str, Any]:
    vpc_id = str(args.get("id"))
    if not re.fullmatch(r"vpc-[0-9a-f]{8,17}", vpc_id) or vpc_id.endswith("dead"):
        raise InvokeFailure("no matching EC2 VPC found")  # the data source's own words
    return {
        "id": vpc_id,
        "arn": f"arn:aws:ec2:{region}:{ACCOUNT_ID}:vpc/{vpc_id}",
        "cidrBlock": "10.0.0.0/16",
        "enableDnsSupport": True,
        "enableDnsHostnames": vpc_id != VPC_WITHOUT_DNS_HOSTNAMES,
        "state": "available",
    }


def mock_call(token: str, args: dict[str, Any], region: str) -> dict[str, Any]:
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        return _zones(region, args)
    if token == "aws:ec2/getVpc:getVpc":
        return _vpc(args, region)
    if token == "aws:rds/getEngineVersion:getEngineVersion":
        version = MYSQL_DEFAULT_VERSIONS.get(str(args.get("version")))
        if args.get("engine") != "mysql" or version is None:
            raise InvokeFailure(f"no RDS engine versions match the criteria: {args}")
        return {
            "id": version,
            "engine": "mysql",
            "version": version,
            "versionActual": version,
            "parameterGroupFamily": "mysql" + ".".join(version.split(".")[:2]),
        }
    if token == "aws:rds/getOrderableDbInstance:getOrderableDbInstance":
        wanted = list(args.get("preferredInstanceClasses") or [args.get("instanceClass")])
        offered = [c for c in wanted if c in MYSQL_CLASSES and args.get("engine") == "mysql"]
        if not offered:
            # The data source's own message (internal/service/rds/orderable_instance_data_source.go)
            raise InvokeFailure(
                "no RDS DB Instance Classes match the criteria; try a different search"
            )
        return {
            "id": offered[0],
            "instanceClass": offered[0],
            "engine": "mysql",
            "engineVersion": args.get("engineVersion"),
            "storageType": args.get("storageType", "gp3"),
        }
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {
            "id": ACCOUNT_ID,
            "accountId": ACCOUNT_ID,
            "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/planner",
            "userId": "AIDAPLANNER",
        }
    if token == "aws:index/getPartition:getPartition":
        return {
            "id": "aws",
            "partition": "aws",
            "dnsSuffix": "amazonaws.com",
            "reverseDnsPrefix": "com.amazonaws",
        }
    if token == "aws:index/getRegion:getRegion":
        return {
            "id": region,
            "name": region,
            "region": region,
            "endpoint": f"ec2.{region}.amazonaws.com",
            "description": region,
        }
    raise NotImplementedError(
        f"the offline planner has no mock for invoke {token}: add one to planner/engine.py"
    )


def main(argv: list[str]) -> int:
    request_path, result_path = argv[1], argv[2]
    # Run as a script, sys.path[0] is planner/: drop it so the program's imports cannot pick up
    # this directory's modules.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)
    with open(request_path, encoding="utf-8") as handle:
        request = json.load(handle)
    result = run(request)
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
