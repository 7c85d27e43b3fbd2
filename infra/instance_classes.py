"""What an RDS instance class gives MySQL: its memory, and the `max_connections` RDS derives
from it. Plain Python (no Pulumi), used by settings validation and by the monitoring.

RDS MySQL's default parameter group sets `max_connections` to `{DBInstanceClassMemory/12582880}`
(https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/CHAP_Limits.html#RDS_Limits.MaxConnections),
where DBInstanceClassMemory is the class's memory in bytes less what RDS reserves for its own
processes (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_ParamValuesRef.html). AWS
does not publish the reserve, so this uses the class's nominal memory: the derived limit is an
upper bound, a few percent above what the server reports, and an alarm at 80% of it fires a
little late. Stacks that need it exact set `appdb:dbParameters.max_connections`, as production
does, and the alarm then uses that value.
"""

from __future__ import annotations

import re

GIB = 1024**3
MAX_CONNECTIONS_DIVISOR = 12582880  # RDS MySQL's default {DBInstanceClassMemory/12582880}

# Burstable classes (db.t3, db.t4g): memory by size, from the RDS instance class tables
# (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Concepts.DBInstanceClass.Summary.html).
_BURSTABLE_GIB = {"micro": 1, "small": 2, "medium": 4, "large": 8, "xlarge": 16, "2xlarge": 32}
# Other families: memory per vCPU (general purpose m: 4 GiB, memory optimised r and z1d: 8 GiB,
# x2g/x2idn: 16 GiB, x2iedn/x2iezn: 32 GiB); sizes large = 2 vCPUs, xlarge = 4, Nxlarge = 4N.
_GIB_PER_VCPU = {"m": 4, "r": 8, "z1d": 8, "x2g": 16, "x2idn": 16, "x2iedn": 32, "x2iezn": 32}
_CLASS = re.compile(r"^db\.(?P<family>[a-z][a-z0-9-]*)\.(?P<size>[a-z0-9]+)$")
_SIZE = re.compile(r"^(?P<n>\d*)xlarge$")
_FORMULA = re.compile(r"^\{DBInstanceClassMemory/(?P<divisor>[1-9]\d*)\}$")


class UnknownInstanceClass(ValueError):
    """The class's memory is not known here (a family or size this table does not cover)."""


def is_burstable(instance_class: str) -> bool:
    """db.t* classes earn and spend CPU credits (CPUCreditBalance)."""
    return instance_class.startswith("db.t")


def memory_bytes(instance_class: str) -> int:
    match = _CLASS.match(instance_class)
    if not match:
        raise UnknownInstanceClass(instance_class)
    family, size = match["family"], match["size"]
    if family.startswith("t"):
        if size not in _BURSTABLE_GIB:
            raise UnknownInstanceClass(instance_class)
        return _BURSTABLE_GIB[size] * GIB
    per_vcpu = _GIB_PER_VCPU.get(family) or _GIB_PER_VCPU.get(
        family[0] if family[0] in "mr" else ""
    )
    if per_vcpu is None:
        raise UnknownInstanceClass(instance_class)
    if size == "large":
        vcpus = 2
    elif sized := _SIZE.match(size):
        vcpus = 4 * int(sized["n"] or 1)
    else:  # metal and the like: no fixed size
        raise UnknownInstanceClass(instance_class)
    return vcpus * per_vcpu * GIB


def max_connections(instance_class: str, parameter_value: str | None = None) -> int:
    """The instance's `max_connections`: the parameter group's value when it sets one (a number
    or the `{DBInstanceClassMemory/N}` form), else RDS MySQL's default formula."""
    if parameter_value is not None:
        text = parameter_value.strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
        formula = _FORMULA.match(text)
        if not formula:
            raise ValueError(
                f"max_connections {parameter_value!r}: must be a positive integer or "
                "{DBInstanceClassMemory/N}"
            )
        return memory_bytes(instance_class) // int(formula["divisor"])
    return memory_bytes(instance_class) // MAX_CONNECTIONS_DIVISOR
