"""Run by test_migrator_failures: a migrator whose host "vanishes" before its second migration.

It stops itself with SIGSTOP: a stopped process neither talks nor closes its socket, which is
what a powered-off host or a cut network looks like to the server.

Usage: python tests/vanishing_migrator.py HOST PORT PASSWORD CA_PATH DATABASE LOCATION
"""

import os
import signal
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from migrator_support import migrator_for  # noqa: E402

from migrator import engine  # noqa: E402
from standins.mariadb import MariaDBServer  # noqa: E402

host, port, password, ca_path, database, location = sys.argv[1:7]


def vanish_before_v2(self, step):  # type: ignore[no-untyped-def]
    if step.migration.script != "V1__a.sql":
        os.kill(os.getpid(), signal.SIGSTOP)


engine.Migrator._starting = vanish_before_v2  # type: ignore[method-assign]
server = MariaDBServer(host=host, port=int(port), admin_password=password, ca_path=Path(ca_path))
migrator_for(server, database, Path(location), idle_timeout_seconds=2).migrate()
