"""Failover drills on the lab: kill / hang / partition of east in async and sync mode, plus a switchover.

`python -m bench failover` prints a table: the failover playbook's RTO, the client-seen write
outage (a writer through the public DNS name, honouring the TTL), the largest gap between
acknowledged writes, acknowledged writes lost, data at risk. Each drill runs playbooks/drill.yml
(targets reported, not enforced); failback.yml restores the lab between drills, lab_up.yml switches
the replication mode. Uses the lab's fixed ports: never run it beside the lab tests or molecule.
Targets (issue 8): failover.yml <= 5 s, outage <= 3 s + TTL (5 s), switchover gap <= 1.5 s,
0 lost in sync mode and in switchover, idempotent re-run <= 3 s.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.support.ansible import REPO_ROOT, run_playbook

INVENTORY = REPO_ROOT / "inventories" / "lab"
PLAYBOOKS = REPO_ROOT / "playbooks"
DRILL_DIR = Path("/var/tmp/cloudphoenix-lab/drill")
FAULTS = os.environ.get("BENCH_FAILOVER_FAULTS", "kill,hang,partition,none").split(",")
MODES = os.environ.get("BENCH_FAILOVER_MODES", "async,sync").split(",")


def _play(name: str, **extra):
    run = run_playbook(PLAYBOOKS / f"{name}.yml", inventory=INVENTORY, extra_vars=extra or None, timeout=900)
    if run.rc != 0:
        print(f"  {name} {extra} failed (rc={run.rc}):\n{run.stdout[-2500:]}", flush=True)
    return run


def _timed(name: str, **extra) -> tuple[float, object]:
    started = time.monotonic()
    run = _play(name, **extra)
    return time.monotonic() - started, run


def run() -> None:
    rows = []
    _play("lab_down")
    for mode in MODES:
        _play("lab_up", cloudphoenix_pg_replication_mode=mode)
        for fault in FAULTS:
            drill = _play("drill", drill_fault=fault, drill_enforce_targets=False,
                          cloudphoenix_pg_replication_mode=mode)
            result = DRILL_DIR / f"drill-{fault}-{mode}.json"
            figures = json.loads(result.read_text()) if drill.rc == 0 and result.exists() else {}
            rerun_s, rerun = _timed("failover", cloudphoenix_pg_replication_mode=mode)
            figures["rerun_seconds"] = round(rerun_s, 2) if rerun.rc == 0 and rerun.total("changed") == 0 else None
            rows.append((fault if fault != "none" else "switchover", mode, figures))
            # re-arms sync mode itself; a drill may lose async writes on purpose: failback keeps them in a copy
            _play("failback", cloudphoenix_pg_replication_mode=mode, failback_allow_data_loss=True)
    _play("lab_down")
    header = f"{'drill':<11} {'mode':<5} {'RTO s':>6} {'outage s':>9} {'max gap s':>9} {'acked':>6} {'lost':>5} " \
             f"{'at risk B':>9} {'rerun s':>8}"
    print(header)
    for fault, mode, f in rows:
        def cell(key, width, fig=f):
            value = fig.get(key)
            return f"{'-' if value is None else value:>{width}}"
        print(f"{fault:<11} {mode:<5} {cell('rto_seconds', 6)} {cell('outage_seconds', 9)} "
              f"{cell('max_gap_seconds', 9)} "
              f"{cell('acknowledged', 6)} {cell('lost', 5)} {cell('data_at_risk_bytes', 9)} {cell('rerun_seconds', 8)}")
    print("targets: RTO <= 5 s, outage <= 8 s (3 s + TTL 5 s), switchover gap <= 1.5 s, lost 0 in sync/switchover, "
          "rerun <= 3 s")
