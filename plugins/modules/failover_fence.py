#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: failover_fence
short_description: Fence the old region on its host - stop its primary database and its services at the same time
version_added: 1.0.0
description:
  - The fence phase of the failover runbook, run on the old region's host. Stops the old primary database
    (like M(cloudphoenix.stack.pg_replication) with O(cloudphoenix.stack.pg_replication#module:state=fenced))
    and the old region's services (the processes of O(services_pid_dir)/*.pid and their children)
    concurrently, in one module call.
  - Database, O(strategy=stop) - fast shutdown (up to O(wait_timeout) seconds; it lets the standby receive
    the last WAL), then immediate, then SIGKILL; a SIGSTOPped (hung) postmaster is SIGKILLed at once. With
    O(skip_fast=true) (the preflight found the old primary cut off or hung) the fast shutdown is skipped -
    it would only wait for a standby the old primary cannot reach - and the server is stopped immediately.
    O(strategy=read_only) is advisory and keeps reads (see M(cloudphoenix.stack.pg_replication)).
  - Services - QUIT (gunicorn's fast shutdown; a fenced region has nothing to finish), SIGKILL at once for a
    stopped (hung) process, SIGKILL for whatever still runs O(services_stop_timeout) seconds later.
  - Returns when it started and finished (epoch seconds), so the runbook needs no separate time mark.
author: CloudPhoenix engineers (@cloudphoenix)
extends_documentation_fragment:
  - cloudphoenix.stack.postgres
  - cloudphoenix.stack.postgres.node
attributes:
  check_mode:
    description: Reports what would be stopped, changes nothing.
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
options:
  strategy:
    description: How the database is fenced.
    type: str
    choices: [stop, read_only]
    default: stop
  wait_timeout:
    description: Seconds the fast shutdown may take before immediate (at most 10).
    type: int
    default: 10
  skip_fast:
    description: Stop the database immediately, without a fast shutdown first (it did not answer the preflight).
    type: bool
    default: false
  services_pid_dir:
    description: Directory of the services' pidfiles. Omitted - no services are stopped.
    type: path
  services_stop_timeout:
    description: Seconds the services get after QUIT before SIGKILL.
    type: float
    default: 1
"""

EXAMPLES = r"""
- name: Fence east (database and services)
  cloudphoenix.stack.failover_fence:
    data_dir: /var/tmp/cloudphoenix-lab/east/pg/data
    socket_dir: /var/tmp/cloudphoenix-lab/east/pg/run
    listen_address: 127.0.10.1
    os_user: postgres
    skip_fast: "{{ not failover_pre.regions.east.reachable }}"
    services_pid_dir: /var/tmp/cloudphoenix-lab/east/pids
  delegate_to: east
"""

RETURN = r"""
method:
  description: How the database was stopped - V(fast), V(immediate), V(kill); absent when it was not running.
  returned: success, not in check mode
  type: str
msg:
  description: For example C(not running - takes no writes) when the database was already down.
  returned: sometimes
  type: str
database_seconds:
  description: How long the database fence took.
  returned: when a database fence ran
  type: float
services:
  description: The services fence - V(stopped) processes that were running, V(killed) of them needed SIGKILL,
    V(seconds) it took.
  returned: always
  type: dict
services_text:
  description: The services fence in words, for the report (V(stopped=N)).
  returned: always
  type: str
started_at:
  description: Epoch seconds when the module started.
  returned: always
  type: float
finished_at:
  description: Epoch seconds when both fences were done.
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cloudphoenix.stack.plugins.module_utils._pg import (
    DEFAULT_BIN_DIR,
    Node,
    connection_argument_spec,
)
from ansible_collections.cloudphoenix.stack.plugins.module_utils import _failover_fence


def main():
    started_at = time.time()
    spec = connection_argument_spec()
    spec.update(
        data_dir=dict(type="path", required=True),
        bin_dir=dict(type="path", default=DEFAULT_BIN_DIR),
        os_user=dict(type="str", default="postgres"),
        log_file=dict(type="path"),
        strategy=dict(type="str", choices=["stop", "read_only"], default="stop"),
        wait_timeout=dict(type="int", default=10),
        skip_fast=dict(type="bool", default=False),
        services_pid_dir=dict(type="path"),
        services_stop_timeout=dict(type="float", default=1.0),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    node = Node.from_params(params)
    (database, db_error), (services, svc_error) = _failover_fence.fence(
        node, params, params["services_pid_dir"], params["services_stop_timeout"], params["skip_fast"],
        module.check_mode)
    result = dict(changed=False, started_at=started_at, services=services or {},
                  services_text="stopped=%d" % (services or {}).get("stopped", 0))
    if services and services["stopped"] and not module.check_mode:
        result["changed"] = True
    if database:
        database.pop("diff", None)
        for warning in database.pop("warnings", []):
            module.warn(warning)
        result["changed"] = result["changed"] or database.pop("changed", False)
        result["database_seconds"] = database.pop("seconds", None)
        result.update(database)
    if module.check_mode and services and services["stopped"]:
        result["changed"] = True
        result["services_text"] = "would stop %d" % services["stopped"]
    result["finished_at"] = time.time()
    errors = ["database: %s" % db_error] if db_error else []
    if svc_error:
        errors.append("services: %s" % svc_error)
    if errors:
        module.fail_json(msg="fence failed: %s" % "; ".join(errors), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
