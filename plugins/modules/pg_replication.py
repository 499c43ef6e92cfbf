#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: pg_replication
short_description: Make a PostgreSQL node a replicating primary, a streaming standby, a promoted or a fenced node
version_added: 1.0.0
description:
  - V(primary) configures a running primary for physical replication - the replication role
    (SCRAM password, sent as a verifier), one physical slot per standby, C(pg_hba.conf) lines,
    C(wal_level), C(max_wal_senders), C(max_replication_slots), C(wal_log_hints) (so C(pg_rewind) works
    later), C(hot_standby) and C(synchronous_standby_names) for O(mode=sync). It reloads the server
    and returns which settings still need a restart in RV(restart_required).
  - V(standby) makes O(data_dir) a streaming standby of O(primary_host) - clones an empty or missing
    directory with C(pg_basebackup); rejoins an old primary with C(pg_rewind) after checking that the
    source is out of recovery; writes C(primary_conninfo) with a passfile (never an inline password)
    and C(primary_slot_name), replacing what basebackup/rewind copied from the source's
    C(postgresql.auto.conf); starts it and waits until it streams. A healthy standby of the same
    primary is left untouched.
  - V(promoted) promotes a standby and waits until it accepts writes. It refuses when the standby is
    more than O(max_lag_bytes) behind the primary unless O(allow_data_loss=true), and refuses while the
    old primary is reachable and still writable (fence it first). It clears
    C(synchronous_standby_names) first, so the new primary never waits for an absent synchronous standby.
    An unfenced primary is left alone (C(changed=false)).
  - V(fenced) stops an old primary from taking writes. O(strategy=stop) (default) shuts it down
    (fast, then immediate, then SIGKILL; a SIGSTOPped server is SIGKILLed at once); it is the only
    strategy that no client can undo, and a cleanly stopped node is what C(pg_rewind) wants later.
    O(strategy=read_only) keeps reads - it sets C(default_transaction_read_only) and terminates client
    sessions, but a session may still C(SET default_transaction_read_only = off), so it is advisory.
  - Check mode runs every read and precondition, changes nothing and reports RV(actions) it would
    take; with diff it shows settings, role and conninfo before and after.
author: CloudPhoenix engineers (@cloudphoenix)
extends_documentation_fragment:
  - cloudphoenix.stack.postgres
  - cloudphoenix.stack.postgres.node
attributes:
  check_mode:
    description: Full support; every precondition is checked, nothing is changed.
    support: full
  diff_mode:
    description: Role, slots, settings, C(pg_hba.conf) lines, conninfo and running state before and after.
    support: full
options:
  state:
    description:
      - What the node should be. See the description for what each state does.
    type: str
    required: true
    choices: [primary, standby, promoted, fenced]
  replication_user:
    description:
      - Replication role - created on the primary (V(primary)), used by the standby to stream (V(standby)).
    type: str
    default: replicator
  replication_password:
    description:
      - Password of O(replication_user). Required to create the role, and for V(standby) unless the
        passfile already exists. Never logged or returned.
    type: str
  standby_slots:
    description:
      - V(primary) - physical replication slots to create, one per standby. Existing slots are kept.
    type: list
    elements: str
    default: []
  hba_networks:
    description:
      - V(primary) - networks (CIDR, or V(samehost)/V(samenet)/V(all)) allowed to connect for replication
        as O(replication_user) with scram-sha-256.
    type: list
    elements: str
    default: []
  mode:
    description:
      - V(primary) - V(sync) sets C(synchronous_standby_names) to C(FIRST 1 (...)) of
        O(sync_standby_names); V(async) clears it.
      - With V(sync) and the synchronous standby gone, commits on the primary wait forever; the
        failover runbook fences such a primary.
    type: str
    choices: [async, sync]
    default: async
  sync_standby_names:
    description:
      - V(primary) with O(mode=sync) - standby application names. Defaults to O(standby_slots)
        (V(standby) uses the slot name as application name).
    type: list
    elements: str
  primary_host:
    description:
      - V(standby) - address of the primary to follow.
    type: str
  primary_port:
    description:
      - V(standby) - port of the primary to follow.
    type: int
    default: 5432
  slot_name:
    description:
      - V(standby) - physical slot on the primary this standby streams from.
    type: str
  create_slot:
    description:
      - V(standby) - create O(slot_name) on the primary (over the replication protocol) when missing.
    type: bool
    default: true
  application_name:
    description:
      - V(standby) - application name in C(primary_conninfo), the name C(synchronous_standby_names) matches.
        Defaults to O(slot_name).
    type: str
  passfile:
    description:
      - V(standby) - libpq passfile the module writes (mode 0600, owned by O(os_user)) with the replication
        (and rewind) credentials; C(primary_conninfo) refers to it. Defaults to C(replication.pgpass)
        beside O(data_dir).
    type: path
  rewind_user:
    description:
      - V(standby) - role C(pg_rewind) connects as (a superuser or a role with the rewind grants).
    type: str
    default: postgres
  rewind_password:
    description:
      - V(standby) - password of O(rewind_user), stored in the passfile. Never logged or returned.
    type: str
  max_lag_bytes:
    description:
      - V(promoted) - largest gap, in bytes, between the newest primary WAL position known and what
        the standby received, that a promotion may lose. 1 MiB is Patroni's default.
    type: int
    default: 1048576
  allow_data_loss:
    description:
      - V(promoted) - promote even when the lag is above O(max_lag_bytes).
      - V(standby) - rewind an old primary even when it committed transactions after the new primary's
        timeline branched off (the fork point), which the rewind discards. Before rewinding, the module
        keeps a copy of the stopped data directory in C(<data_dir>.diverged-<UTC stamp>) (C(cp -a) as
        O(os_user)) and reports it in RV(divergence) and a warning. Without it such a rewind is refused
        and nothing changes. WAL after the fork with no commit (checkpoints, a shutdown record) is not
        data loss and needs no O(allow_data_loss).
    type: bool
    default: false
  primary_lsn:
    description:
      - V(promoted) - newest WAL position of the old primary known to the caller (for example
        RV(cloudphoenix.stack.pg_replication_info#module:lsn) from a preflight).
      - The lag guard uses the newest of this, the primary itself (probed over the replication protocol
        with the standby's own conninfo) and what the standby's WAL receiver last heard.
    type: str
  primary_probe_timeout:
    description:
      - V(promoted) - seconds to try reaching the old primary for the lag guard and the split-brain check;
        V(0) skips the probe. A dead primary refuses at once; a partitioned one costs this long.
    type: int
    default: 2
  strategy:
    description:
      - V(fenced) - V(stop) shuts the server down; V(read_only) keeps it up but read-only (advisory).
    type: str
    choices: [stop, read_only]
    default: stop
  wait_timeout:
    description:
      - Seconds to wait for start, streaming, promotion or writability. V(fenced) waits at most 10 s for a
        fast shutdown before escalating.
    type: int
    default: 60
  not_before:
    description:
      - V(promoted) - do not promote before this time (epoch seconds). The runbook sets it when its fence could
        not reach the old region - the end of that region's write lease - so the old region cannot take a write
        the new primary never sees. The wait is reported in RV(lease_wait_seconds); check mode does not wait.
    type: float
  fence_epoch:
    description:
      - V(promoted) - the fencing token - stamp this epoch (the run's claim) into each of O(fence_databases)
        right after the node is writable, also when it already was a primary. The services' write
        triggers refuse writes unless the stamped epoch equals their lease's, so an old primary that
        could not be fenced keeps an older epoch and refuses them. Epochs only grow - a database stamped
        with a newer epoch, or with this epoch for another region, fails the run and nothing is stamped.
    type: int
  fence_region:
    description:
      - The region stamped with O(fence_epoch).
    type: str
  fence_databases:
    description:
      - Application databases to stamp with O(fence_epoch).
    type: list
    elements: str
    default: []
notes:
  - Runs on the node's host as root (or as O(os_user)); needs C(runuser) when root.
  - Strategy notes (fencing, rewind, what needs a restart) are in C(docs/modules/pg_replication.md).
seealso:
  - module: cloudphoenix.stack.pg_replication_info
"""

EXAMPLES = r"""
- name: East is the primary; the west standby streams through slot west
  cloudphoenix.stack.pg_replication:
    state: primary
    data_dir: /var/tmp/cloudphoenix-lab/east/pg/data
    socket_dir: /var/tmp/cloudphoenix-lab/east/pg/run
    listen_address: 127.0.10.1
    replication_password: "{{ lookup('file', '/var/tmp/cloudphoenix-lab/secrets/replicator') }}"
    standby_slots: [west]
    hba_networks: [127.0.0.0/8]
    mode: async

- name: West follows east (clone when empty, rewind when it is an old primary)
  cloudphoenix.stack.pg_replication:
    state: standby
    data_dir: /var/tmp/cloudphoenix-lab/west/pg/data
    socket_dir: /var/tmp/cloudphoenix-lab/west/pg/run
    listen_address: 127.0.20.1
    primary_host: 127.0.10.1
    slot_name: west
    replication_password: "{{ lookup('file', '/var/tmp/cloudphoenix-lab/secrets/replicator') }}"
    rewind_password: "{{ lookup('file', '/var/tmp/cloudphoenix-lab/secrets/postgres') }}"

- name: Fence the old primary
  cloudphoenix.stack.pg_replication:
    state: fenced
    data_dir: /var/tmp/cloudphoenix-lab/east/pg/data
    strategy: stop

- name: Promote west unless it would lose more than 1 MiB
  cloudphoenix.stack.pg_replication:
    state: promoted
    data_dir: /var/tmp/cloudphoenix-lab/west/pg/data
    socket_dir: /var/tmp/cloudphoenix-lab/west/pg/run
    listen_address: 127.0.20.1
    primary_lsn: "{{ east_info.lsn | default(omit) }}"
  register: promotion
"""

RETURN = r"""
actions:
  description: What the module did, or in check mode would do, in order.
  returned: always
  type: list
  elements: str
  sample: ["create physical slot west on primary 127.0.10.1:5432", "clone primary 127.0.10.1:5432 with pg_basebackup"]
plan:
  description: V(standby) - the path taken - V(clone), V(rewind), V(reconfigure), V(start) or V(none).
  returned: state is standby
  type: str
  sample: rewind
rewind:
  description: V(standby) - V(done) or V(not_required) (C(pg_rewind) found no divergence).
  returned: when pg_rewind ran
  type: str
divergence:
  description:
    - V(standby) - what the old primary wrote after the fork point, measured before the rewind with
      C(pg_waldump) on its own C(pg_wal) from the fork point (found from the timeline histories, the new
      primary's read with C(TIMELINE_HISTORY)).
    - C(bytes) of WAL and C(records) after C(fork_lsn) up to C(end_lsn); C(transactions) - committed
      transactions (C(Transaction) C(COMMIT) records) among them; C(last_commit) - when the last one
      committed; C(rmgr_records) - records per resource manager; C(end_reason) - why the scan stopped.
    - C(kept_copy) - the copy of the data directory kept before the rewind (null when none was needed);
      C(discarded) - whether the rewind discards committed transactions. C(error) - why it could not be
      measured (then the counts are null and the rewind needs O(allow_data_loss)).
  returned: when the node is an old primary to rewind
  type: dict
  sample: {"fork_lsn": "0/3000148", "end_lsn": "0/30002E0", "bytes": 408, "records": 4, "transactions": 1,
           "last_commit": "2026-12-05 02:30:11.120534 UTC", "kept_copy": "/pg/data.diverged-20261205T023015Z",
           "discarded": true, "timeline": 1, "source_timeline": 2, "fork_timeline": 1,
           "rmgr_records": {"Heap": 1, "Transaction": 1, "XLOG": 2}, "end_reason": "end of WAL"}
rewind_copied_kb:
  description: V(standby) - kilobytes C(pg_rewind) copied from the source.
  returned: when pg_rewind rewound the node
  type: int
timings:
  description:
    - V(standby) - seconds per phase (checks, stop, keep_copy, source_checkpoint, pg_rewind, configure, start,
      streaming).
  returned: state is standby
  type: dict
  sample: {"checks": 0.05, "pg_rewind": 0.6, "start": 0.3, "streaming": 0.1}
restart_required:
  description: V(primary) - settings that only take effect after a server restart.
  returned: state is primary
  type: list
  elements: str
  sample: [wal_log_hints]
reloaded:
  description: V(primary) - whether the module reloaded the server configuration.
  returned: state is primary
  type: bool
promoted_lsn:
  description: V(promoted) - last WAL position replayed before the new timeline began.
  returned: state is promoted
  type: str
  sample: 0/3000148
seconds_to_writable:
  description: V(promoted) - seconds from the module's start until the node accepted a write.
  returned: state is promoted
  type: float
  sample: 0.21
lease_wait_seconds:
  description: V(promoted) - how long the promotion waited for O(not_before) (0 when it did not have to).
  returned: when a standby was promoted
  type: float
  sample: 8.2
fence_epoch:
  description: V(promoted) with O(fence_epoch) - the epoch the databases are stamped with (the diff shows their before).
  returned: when O(fence_epoch) and O(fence_databases) are given
  type: int
  sample: 2
lag_bytes_at_promotion:
  description: V(promoted) - bytes the standby was behind RV(reference_lsn) (null when unknown).
  returned: when a promotion was considered
  type: int
lag_source:
  description:
    - V(promoted) - where RV(reference_lsn) came from.
    - V(primary), V(primary_lsn option), V(wal receiver) or V(unknown).
  returned: when a promotion was considered
  type: str
reference_lsn:
  description: V(promoted) - newest primary WAL position known when deciding.
  returned: when a promotion was considered
  type: str
primary_probe:
  description: V(promoted) - V(reachable), or why the old primary could not be probed.
  returned: when a probe was tried
  type: str
strategy:
  description: V(fenced) - the strategy used.
  returned: state is fenced
  type: str
method:
  description: V(fenced) with V(stop) - how it stopped - V(fast), V(immediate) or V(kill).
  returned: when the module stopped the server
  type: str
terminated_sessions:
  description: V(fenced) with V(read_only) - client sessions terminated.
  returned: when the read_only fence was applied
  type: int
info:
  description:
    - The node after the run, as M(cloudphoenix.stack.pg_replication_info) returns it (role, in_recovery,
      timeline, lsn, current_lsn, receive_lsn, replay_lsn, lag_bytes, lag_seconds, streaming, standbys, slots).
    - Its C(reachable) is false for a stopped node.
  returned: always
  type: dict
role:
  description: V(primary), V(standby), or V(unknown) when the server is not reachable.
  returned: always
  type: str
  sample: primary
in_recovery:
  description: Whether the node is in recovery (a standby); null when unreachable.
  returned: always
  type: bool
timeline:
  description: The node's current timeline.
  returned: always
  type: int
  sample: 2
lsn:
  description: Current WAL position of a primary, replay position of a standby.
  returned: always
  type: str
  sample: 0/3000148
lag_bytes:
  description: For a standby, bytes between the newest primary position it knows and what it replayed; 0 for a primary.
  returned: always
  type: int
  sample: 0
"""

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cloudphoenix.stack.plugins.module_utils._pg import (
    DRIVER_ERRORS,
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    DEFAULT_BIN_DIR,
    Node,
    connection_argument_spec,
    PgError,
    gather_info,
)
from ansible_collections.cloudphoenix.stack.plugins.module_utils._pg_replication import (
    DEFAULT_MAX_LAG_BYTES,
    ensure_fenced,
    ensure_primary,
    ensure_promoted,
    ensure_standby,
)

STATES = {"primary": ensure_primary, "standby": ensure_standby, "fenced": ensure_fenced}


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        state=dict(type="str", required=True, choices=["primary", "standby", "promoted", "fenced"]),
        data_dir=dict(type="path", required=True),
        bin_dir=dict(type="path", default=DEFAULT_BIN_DIR),
        os_user=dict(type="str", default="postgres"),
        log_file=dict(type="path"),
        replication_user=dict(type="str", default="replicator"),
        replication_password=dict(type="str", no_log=True),
        standby_slots=dict(type="list", elements="str", default=[]),
        hba_networks=dict(type="list", elements="str", default=[]),
        mode=dict(type="str", choices=["async", "sync"], default="async"),
        sync_standby_names=dict(type="list", elements="str"),
        primary_host=dict(type="str"),
        primary_port=dict(type="int", default=5432),
        slot_name=dict(type="str"),
        create_slot=dict(type="bool", default=True),
        application_name=dict(type="str"),
        passfile=dict(type="path", no_log=False),
        rewind_user=dict(type="str", default="postgres"),
        rewind_password=dict(type="str", no_log=True),
        max_lag_bytes=dict(type="int", default=DEFAULT_MAX_LAG_BYTES),
        allow_data_loss=dict(type="bool", default=False),
        primary_lsn=dict(type="str"),
        primary_probe_timeout=dict(type="int", default=2),
        strategy=dict(type="str", choices=["stop", "read_only"], default="stop"),
        wait_timeout=dict(type="int", default=60),
        not_before=dict(type="float"),
        fence_epoch=dict(type="int"),
        fence_region=dict(type="str"),
        fence_databases=dict(type="list", elements="str", default=[]),
    )
    return spec


def main():
    started = time.monotonic()
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[("state", "standby", ["primary_host"])],
        required_together=[("fence_epoch", "fence_region")],
        supports_check_mode=True,
    )
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    params = module.params
    node = Node.from_params(params)
    try:
        if params["state"] == "promoted":
            outcome = ensure_promoted(node, params, module.check_mode, started=started)
        else:
            outcome = STATES[params["state"]](node, params, module.check_mode)
    except PgError as exc:
        module.fail_json(msg=str(exc), changed=False)
    except (OSError, *DRIVER_ERRORS) as exc:
        module.fail_json(msg="%s failed: %s" % (params["state"], exc), changed=False)
    diff = outcome.pop("diff")
    for warning in outcome.pop("warnings"):
        module.warn(warning)
    info = gather_info(node)
    result = dict(outcome, info=info, role=info["role"], in_recovery=info["in_recovery"],
                  timeline=info["timeline"], lsn=info["lsn"], lag_bytes=info["lag_bytes"])
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
