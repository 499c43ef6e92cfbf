"""moto_server with two RDS behaviours that moto 5.2 lacks, patched in to match the AWS documentation.

Run as a script: ``python moto_rds_like_aws.py HOST PORT`` (serves until terminated).

1. ``DescribeDBInstances`` returns ``StatusInfos`` (``StatusType: read replication``) for a read replica.
   AWS documents it as "the status of a read replica; blank if the instance isn't a read replica", and
   amazon.aws.rds_instance only calls ``PromoteReadReplica`` when it is present. Stock moto never returns
   it, so stock moto makes ``read_replica: false`` a silent no-op.
2. ``PromoteReadReplica`` detaches the replica: ``ReadReplicaSourceDBInstanceIdentifier`` is cleared and
   the source forgets it (``ReadReplicaDBInstanceIdentifiers``). Stock moto only flips an internal flag.

Nothing else is changed. What this still cannot show: real promotion takes minutes (the instance goes
through ``modifying``/``rebooting``; moto is ``available`` at once), and there is no replication, so no
lag and no lost writes.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from moto.rds import models
from moto.server import ThreadedMotoServer


def _status_infos(self: models.DBInstance) -> list[dict[str, Any]] | None:
    if self.source_db_instance_identifier:
        return [{"StatusType": "read replication", "Normal": True, "Status": "replicating"}]
    return None


_stock_promote = models.RDSBackend.promote_read_replica


def _promote_and_detach(self: models.RDSBackend, db_kwargs: dict[str, Any]) -> models.DBInstance:
    database = self.databases[db_kwargs["db_instance_identifier"]]
    source_id = database.source_db_instance_identifier
    database = _stock_promote(self, db_kwargs)
    if source_id:
        try:
            source = self.find_db_from_id(source_id)
        except Exception:  # noqa: BLE001 - the source may be gone (region lost): nothing to detach from
            source = None
        if source is not None:
            source.replicas = [ref for ref in source.replicas
                               if ref not in (database.db_instance_arn, database.db_instance_identifier)]
        database.source_db_instance_identifier = None
    return database


models.DBInstance.status_infos = property(_status_infos)  # type: ignore[attr-defined]
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
