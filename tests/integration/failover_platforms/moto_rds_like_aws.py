"""moto_server with two RDS behaviours that moto 5.2 lacks, patched in to match the AWS documentation.

Run as a script: ``python moto_rds_like_aws.py HOST PORT`` (serves until terminated).

1. ``DescribeDBInstances`` returns ``StatusInfos`` (``StatusType: read replication``) for a read replica.
   AWS documents it as "the status of a read replica; blank if the instance isn't a read replica", and
   amazon.aws.rds_instance only calls ``PromoteReadReplica`` when it is present. Stock moto never returns
   it, so stock moto makes ``read_replica: false`` a silent no-op.
2. ``PromoteReadReplica`` detaches the replica: the source forgets it (``ReadReplicaDBInstanceIdentifiers``)
   and, after ``MOTO_RDS_PROMOTE_SECONDS`` (default 0) during which the instance is ``modifying``,
   ``ReadReplicaSourceDBInstanceIdentifier`` and ``StatusInfos`` are gone. Stock moto only flips an
   internal flag. A second call while it is under way, or on a standalone instance, fails with
   ``InvalidDBInstanceState`` as on AWS.

Nothing else is changed. What this still cannot show: the real promotion's minutes and its steps
(``modifying``, ``rebooting``), replication itself, so no lag and no lost writes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

from moto.rds import models
from moto.rds.exceptions import RDSClientError
from moto.server import ThreadedMotoServer

# Seconds a promotion takes: the instance is `modifying` and still names its source until then.
PROMOTE_SECONDS = float(os.environ.get("MOTO_RDS_PROMOTE_SECONDS", "0"))


def _promoting(self: models.DBInstance) -> bool:
    done_at = getattr(self, "_promotion_done_at", None)
    return done_at is not None and time.monotonic() < done_at


def _source(self: models.DBInstance) -> str | None:
    if getattr(self, "_promotion_done_at", None) is not None and not _promoting(self):
        return None   # detached
    return self.source_db_instance_identifier


def _status(self: models.DBInstance) -> str:
    return "modifying" if _promoting(self) else self.status


def _status_infos(self: models.DBInstance) -> list[dict[str, Any]] | None:
    if _source(self):
        return [{"StatusType": "read replication", "Normal": True, "Status": "replicating"}]
    return None


_stock_promote = models.RDSBackend.promote_read_replica


def _promote_and_detach(self: models.RDSBackend, db_kwargs: dict[str, Any]) -> models.DBInstance:
    database = self.databases[db_kwargs["db_instance_identifier"]]
    source_id = _source(database)
    if not source_id:
        raise RDSClientError("InvalidDBInstanceState", "DB Instance is not a read replica.")
    if _promoting(database):
        raise RDSClientError("InvalidDBInstanceState",
                             f"DB instance {database.db_instance_identifier} is not in available state.")
    database = _stock_promote(self, db_kwargs)
    try:
        source = self.find_db_from_id(source_id)
    except Exception:  # noqa: BLE001 - the source may be gone (region lost): nothing to detach from
        source = None
    if source is not None:
        source.replicas = [ref for ref in source.replicas
                           if ref not in (database.db_instance_arn, database.db_instance_identifier)]
    database._promotion_done_at = time.monotonic() + PROMOTE_SECONDS
    return database


models.DBInstance.status_infos = property(_status_infos)  # type: ignore[attr-defined]
models.DBInstance.db_instance_status = property(_status)  # type: ignore[attr-defined]
models.DBInstance.read_replica_source_db_instance_identifier = property(_source)  # type: ignore[assignment]
models.RDSBackend.promote_read_replica = _promote_and_detach  # type: ignore[method-assign]


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
