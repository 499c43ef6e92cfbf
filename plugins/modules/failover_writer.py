#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: failover_writer
short_description: A background client writing orders through the public DNS name, for failover drills
version_added: 1.0.0
description:
  - V(started) starts a detached writer process - it resolves the URL's host through O(dns_server) (keeping the
    answer for its TTL, like a well-behaved client), POSTs one order after another with a unique
    C(Idempotency-Key) and logs every attempt to O(log_file).
  - V(stopped) stops it and returns the drill figures - writes attempted and acknowledged, the client-seen
    write outage after O(trigger) (first failed write to the first successful one after it), the largest gap
    between acknowledged writes after O(trigger), and, when a database is given, the acknowledged writes missing
    from it (lost writes).
  - For drills on a lab or a staging stack; it writes real orders.
author: CloudPhoenix engineers (@cloudphoenix)
attributes:
  check_mode:
    description: Starts and stops nothing in check mode.
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
options:
  state:
    description: Start or stop the writer.
    type: str
    choices: [started, stopped]
    required: true
  url:
    description: The orders URL through the public name, for example C(http://api.phoenix.test:8080/orders).
    type: str
  dns_server:
    description: DNS server (IP) that resolves the URL's host.
    type: str
    default: 127.0.0.1
  dns_port:
    description: Its port.
    type: int
    default: 53
  interval:
    description: Seconds between the starts of two writes (a write taking longer delays the next).
    type: float
    default: 0.05
  log_file:
    description: JSON-lines log of every attempt; its C(.pid) and C(.stop) siblings control the process.
    type: path
    required: true
  trigger:
    description: V(stopped) - Unix time of the fault; figures count from here.
    type: float
  db_host:
    description: V(stopped) - the new primary (host or socket directory) to look the acknowledged orders up in.
    type: str
  db_port:
    description: Its port.
    type: int
    default: 5432
  db_user:
    description: Role to read the orders table with.
    type: str
    default: postgres
  db_password:
    description: Its password. Never logged or returned.
    type: str
  db_name:
    description: Database holding the orders table.
    type: str
    default: phoenix
"""

EXAMPLES = r"""
- name: Start writing through the public name
  cloudphoenix.stack.failover_writer:
    state: started
    url: http://api.phoenix.test:8080/orders
    dns_server: 127.0.0.1
    dns_port: 5353
    log_file: /var/tmp/cloudphoenix-lab/drill/writes.jsonl

- name: Stop and measure
  cloudphoenix.stack.failover_writer:
    state: stopped
    log_file: /var/tmp/cloudphoenix-lab/drill/writes.jsonl
    trigger: "{{ drill_trigger }}"
    db_host: /var/tmp/cloudphoenix-lab/west/pg/run
  register: drill_writes
"""

RETURN = r"""
pid:
  description: V(started) - the writer's process id.
  returned: state is started
  type: int
attempted:
  description: Writes attempted.
  returned: state is stopped
  type: int
acknowledged:
  description: Writes acknowledged (201).
  returned: state is stopped
  type: int
outage_seconds:
  description: Client-seen write outage after O(trigger) (null when no write failed, or none succeeded again).
  returned: state is stopped
  type: float
recovered:
  description: Whether a write succeeded after the first failure.
  returned: state is stopped
  type: bool
max_gap_seconds:
  description: Largest gap between two acknowledged writes after O(trigger).
  returned: state is stopped
  type: float
lost:
  description: Acknowledged writes missing from the database (null when no database was given).
  returned: state is stopped
  type: int
"""

import os
import signal
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cloudphoenix.stack.plugins.module_utils import _failover_writer as writer


def start(module, params):
    log_file = params["log_file"]
    directory = os.path.dirname(log_file)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    for path in (log_file, log_file + ".stop"):
        if os.path.exists(path):
            os.unlink(path)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: detach, then the writer runs in a grandchild
        os.close(read_end)
        os.setsid()
        grandchild = os.fork()
        if grandchild:
            os.write(write_end, str(grandchild).encode())
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(write_end)
        try:
            writer.write_loop(params["url"], params["dns_server"], params["dns_port"], log_file, log_file + ".stop",
                              interval=params["interval"])
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    writer_pid = int(os.read(read_end, 32).decode() or 0)
    os.close(read_end)
    with open(log_file + ".pid", "w") as handle:
        handle.write("%d\n" % writer_pid)
    module.exit_json(changed=True, pid=writer_pid)


def lookup_missing(params, ids):
    import psycopg2

    conn = psycopg2.connect(host=params["db_host"], port=params["db_port"], user=params["db_user"],
                            password=params["db_password"], dbname=params["db_name"], connect_timeout=5)
    try:
        cur = conn.cursor()
        cur.execute("SELECT id::text FROM orders WHERE id::text = ANY(%s)", (ids,))
        found = set(row[0] for row in cur.fetchall())
    finally:
        conn.close()
    return [order_id for order_id in ids if order_id not in found]


def kill_quietly(pid):
    """SIGKILL pid; True when it was still there."""
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return False
    return True


def stop(module, params):
    log_file = params["log_file"]
    with open(log_file + ".stop", "w") as handle:
        handle.write("stop\n")
    pid = None
    if os.path.exists(log_file + ".pid"):
        with open(log_file + ".pid") as handle:
            pid = int(handle.read().strip() or 0)
    deadline = time.monotonic() + 5
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.05)
    else:
        if pid:
            kill_quietly(pid)
    if not os.path.exists(log_file):
        module.fail_json(msg="no writer log at %s: was the writer started?" % log_file)
    entries = writer.read_log(log_file)
    trigger = params["trigger"] if params["trigger"] is not None else (entries[0]["start"] if entries else 0)
    seconds, _failed_at, recovered_at = writer.outage(entries, trigger)
    ids = writer.acknowledged_ids(entries)
    result = dict(changed=True, attempted=len(entries), acknowledged=len(ids), outage_seconds=seconds,
                  recovered=recovered_at is not None or seconds is None,
                  max_gap_seconds=writer.write_gap(entries, trigger), lost=None)
    if params["db_host"]:
        try:
            missing = lookup_missing(params, ids)
        except Exception as exc:  # noqa: BLE001 - reported, the figures above still stand
            module.fail_json(msg="could not look the acknowledged orders up: %s" % exc, **result)
        result["lost"] = len(missing)
        result["lost_sample"] = missing[:5]
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", required=True, choices=["started", "stopped"]),
            url=dict(type="str"),
            dns_server=dict(type="str", default="127.0.0.1"),
            dns_port=dict(type="int", default=53),
            interval=dict(type="float", default=0.05),
            log_file=dict(type="path", required=True),
            trigger=dict(type="float"),
            db_host=dict(type="str"),
            db_port=dict(type="int", default=5432),
            db_user=dict(type="str", default="postgres"),
            db_password=dict(type="str", no_log=True),
            db_name=dict(type="str", default="phoenix"),
        ),
        required_if=[("state", "started", ["url"])],
        supports_check_mode=True,
    )
    if module.check_mode:
        module.exit_json(changed=True, msg="check mode: the writer was not %s" % module.params["state"])
    if module.params["state"] == "started":
        start(module, module.params)
    stop(module, module.params)


if __name__ == "__main__":
    main()
