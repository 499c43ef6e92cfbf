#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: pg_replication_info
short_description: Report a PostgreSQL node's replication role, timeline, LSNs, lag, standbys and slots
version_added: 1.0.0
description:
  - Connects to one PostgreSQL server and reports its replication state.
  - A server that does not answer is not a failure - the module returns RV(reachable=false) and the
    RV(error), so a failover preflight can ask every region and decide.
author: CloudPhoenix engineers (@cloudphoenix)
extends_documentation_fragment:
  - cloudphoenix.stack.postgres
attributes:
  check_mode:
    description: Read-only module; runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
notes:
  - Lag of a standby is measured against the newest primary position it knows (its received WAL
    and what the primary last reported to its WAL receiver); per-standby lag as the primary sees it
    is in RV(standbys).
seealso:
  - module: cloudphoenix.stack.pg_replication
"""

EXAMPLES = r"""
- name: Where is every region?
  cloudphoenix.stack.pg_replication_info:
    listen_address: "{{ region_address }}"
    socket_dir: /var/tmp/cloudphoenix-lab/{{ region }}/pg/run
    connect_timeout: 2
  register: pg

- name: Stop when the standby is too far behind
  ansible.builtin.assert:
    that: not pg.reachable or pg.lag_bytes <= 1048576
"""

RETURN = r"""
reachable:
  description: Whether the server answered.
  returned: always
  type: bool
error:
  description: Why the server could not be reached (null when reachable).
  returned: always
  type: str
role:
  description: V(primary), V(standby), or V(unknown) when unreachable.
  returned: always
  type: str
  sample: standby
in_recovery:
  description: C(pg_is_in_recovery()).
  returned: always
  type: bool
timeline:
  description: Current timeline (the WAL receiver's or the last checkpoint's on a standby).
  returned: always
  type: int
lsn:
  description: Current WAL position of a primary, replay position of a standby.
  returned: always
  type: str
  sample: 0/3000148
current_lsn:
  description: C(pg_current_wal_lsn()) on a primary.
  returned: when reachable
  type: str
receive_lsn:
  description: Last WAL position received and flushed by a standby.
  returned: when reachable
  type: str
replay_lsn:
  description: Last WAL position replayed by a standby.
  returned: when reachable
  type: str
primary_reported_lsn:
  description: The primary's WAL end as last reported to this standby's WAL receiver.
  returned: when reachable
  type: str
lag_bytes:
  description: Standby - bytes between the newest primary position it knows and its replay position; primary - 0.
  returned: always
  type: int
lag_seconds:
  description: Standby - seconds since the last replayed transaction while WAL is waiting to be replayed, else 0.
  returned: when reachable
  type: float
streaming:
  description: Whether a standby's WAL receiver is streaming.
  returned: when reachable
  type: bool
replay_paused:
  description: Whether replay is paused on a standby.
  returned: when reachable
  type: bool
wal_receiver:
  description:
    - C(pg_stat_wal_receiver) of a standby.
    - Keys status, received_tli, flushed_lsn, latest_end_lsn, sender_host, sender_port, slot_name.
  returned: when reachable
  type: dict
system_identifier:
  description: The cluster's system identifier (equal on a primary and its standbys).
  returned: when reachable
  type: str
server_version:
  description: Server version.
  returned: when reachable
  type: str
primary_conninfo:
  description: The standby's C(primary_conninfo) (holds a passfile path, never a password, when made by pg_replication).
  returned: when reachable
  type: str
primary_slot_name:
  description: The standby's slot.
  returned: when reachable
  type: str
synchronous_standby_names:
  description: Current C(synchronous_standby_names) (empty for asynchronous replication).
  returned: when reachable
  type: str
synchronous_commit:
  description: Current C(synchronous_commit).
  returned: when reachable
  type: str
read_only:
  description: Whether C(default_transaction_read_only) is on (a read_only fence).
  returned: when reachable
  type: bool
data_directory:
  description: The server's data directory.
  returned: when reachable
  type: str
standbys:
  description:
    - Connected standbys from C(pg_stat_replication).
    - Each with C(lag_bytes) as the primary sees it and C(sync_state).
  returned: always
  type: list
  elements: dict
slots:
  description: Replication slots with C(retained_bytes) of WAL they hold back.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cloudphoenix.stack.plugins.module_utils._pg import (
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    Node,
    connection_argument_spec,
    gather_info,
)


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(),
        supports_check_mode=True,
    )
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    module.exit_json(changed=False, **gather_info(Node.from_params(module.params)))


if __name__ == "__main__":
    main()
