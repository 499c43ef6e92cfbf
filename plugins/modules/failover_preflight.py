#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: failover_preflight
short_description: Decide whether and how to move the stack to another region, before anything changes
version_added: 1.0.0
description:
  - The first phase of the failover runbook (role C(cloudphoenix.stack.failover)). Read-only.
  - Reads the fencing record and the public records from the DNS provider, probes every region's
    PostgreSQL server (a short SSLRequest ping first, so a dead, hung or cut-off server costs at most
    O(probe_timeout)) and the old region's service ports, and returns the RV(plan) the later phases follow.
  - Fails, changing nothing, when the DNS provider does not answer, when the target database does not
    answer, when the standby is more than O(max_data_loss_bytes) behind and O(allow_data_loss) is false,
    or when another run that is still running holds the claim (a concurrent run).
  - A plan with C(status=done) means the stack already runs on O(target_region) - the runbook then
    changes nothing. V(resume) means an earlier run was interrupted after its claim - the runbook continues it.
  - With O(claim=true) the module also makes the claim when the plan needs one - the compare-and-swap of the
    fencing record from the value it read to C(plan.claim.value), in the same call (one module start less on
    the critical path). That is its only change, made after every check passed; a concurrent run that swapped
    first makes it fail with C(claim lost), having changed nothing.
author: CloudPhoenix engineers (@cloudphoenix)
extends_documentation_fragment:
  - cloudphoenix.stack.dns
attributes:
  check_mode:
    description: Read-only (with O(claim=true), the claim is only checked, not made).
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
options:
  target_region:
    description: The region the stack should run in afterwards.
    type: str
    required: true
  regions:
    description: Every region of the stack.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Region name (as in the fencing record).
        type: str
        required: true
      address:
        description: Address of the region's database server (and services, probed on O(regions[].service_ports)).
        type: str
        required: true
      pg_port:
        description: Port of the region's PostgreSQL server.
        type: int
        default: 5432
      service_ports:
        description: TCP ports of the region's services; an old region with a listening port still needs fencing.
        type: list
        elements: int
        default: []
  login_user:
    description: PostgreSQL role used to read each region's replication state.
    type: str
    default: postgres
  login_password:
    description: Password of O(login_user). Never logged or returned.
    type: str
  login_db:
    description: Database to connect to.
    type: str
    default: postgres
  probe_timeout:
    description: Seconds a region's server may take to answer the ping (and each service port to accept).
    type: float
    default: 0.5
  fencing_record:
    description: Owner name of the fencing TXT record (C(region=<name> epoch=<n> run=<owner>)).
    type: str
    required: true
  records:
    description:
      - The public records as they must be after the switch (the records the DNS phase sets).
    type: list
    elements: dict
    required: true
  max_data_loss_bytes:
    description: Largest standby lag, in bytes, the failover may lose (the RPO budget).
    type: int
    default: 1048576
  allow_data_loss:
    description:
      - Fail over even when the standby lags more than O(max_data_loss_bytes); the report says how much was at risk.
    type: bool
    default: false
  takeover:
    description: Continue an unfinished run claimed from another controller (whose process cannot be checked from here).
    type: bool
    default: false
  claim:
    description:
      - Make the claim (compare-and-swap of O(fencing_record)) when the plan needs one. Needs the provider's
        credentials (O(key_name)/O(key_secret) for RFC 2136).
    type: bool
    default: false
  claim_ttl:
    description: TTL of the fencing record written by the claim.
    type: int
    default: 5
  mode:
    description: Which runbook asks; only changes the wording of messages.
    type: str
    choices: [failover, switchover, failback]
    default: failover
notes:
  - The run's identity in the fencing record is C(<controller host>/<ansible-playbook pid>/<its start time>);
    an unfinished claim by a process that no longer runs is an interrupted run and is continued.
seealso:
  - module: cloudphoenix.stack.failover_report
  - module: cloudphoenix.stack.dns_records
  - module: cloudphoenix.stack.pg_replication
"""

EXAMPLES = r"""
- name: Preflight
  cloudphoenix.stack.failover_preflight:
    target_region: west
    regions:
      - {name: east, address: 127.0.10.1, service_ports: [8080, 8081]}
      - {name: west, address: 127.0.20.1, service_ports: [8080, 8081]}
    login_password: "{{ cloudphoenix_pg_superuser_password }}"
    provider: rfc2136
    server: 127.0.0.1
    port: 5353
    zone: phoenix.test
    timeout: 3
    fencing_record: _active.phoenix.test
    records:
      - {name: api.phoenix.test, type: A, ttl: 5, values: [127.0.20.1]}
  register: failover_preflight
"""

RETURN = r"""
plan:
  description:
    - What the runbook will do. C(status) is V(ready) (start), V(resume) (continue an interrupted run) or V(done).
    - C(claim) holds C(needed), C(value) (the new fencing value) and C(expect) (the value read);
      C(promote) holds C(needed), C(lag_bytes), C(reference_lsn), C(lag_source); C(skipped) lists what will
      be skipped and why.
  returned: success
  type: dict
  sample: {"status": "ready", "source": "east", "target": "west", "epoch": 2,
           "claim": {"needed": true, "value": "region=west epoch=2 run=ctl/4242/123", "expect": "region=east epoch=1"}}
regions:
  description: Each region's database as probed (reachable, role, read_only, LSNs, error).
  returned: always
  type: dict
dns:
  description: The fencing record and public records as the provider serves them (C(fencing), C(records)).
  returned: when the provider answered
  type: dict
started_at:
  description: Unix time at which the preflight started (the start of the RTO clock).
  returned: always
  type: float
decided_at:
  description: Unix time at which the plan was decided (the end of the preflight phase; the claim follows).
  returned: success
  type: float
claim:
  description:
    - With O(claim=true) - C(cas) (V(swapped), V(matched) in check mode, V(already_applied)), C(changed), C(value).
    - Absent when no claim was needed (a resumed or finished run).
  returned: when a claim was made or planned
  type: dict
"""

import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns
from ansible_collections.cloudphoenix.stack.plugins.module_utils import _failover
from ansible_collections.cloudphoenix.stack.plugins.module_utils._retry import RetryBudgetExceeded
from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_providers import (
    PROVIDER_RULES,
    build_provider,
    check_provider_options,
    provider_argument_spec,
)

try:
    import psycopg2
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._pg import node_status
    HAS_PSYCOPG2 = True
except ImportError:  # pragma: no cover
    HAS_PSYCOPG2 = False

KEEP = ("reachable", "error", "role", "read_only", "timeline", "current_lsn", "receive_lsn", "replay_lsn",
        "primary_reported_lsn", "lag_bytes", "streaming", "system_identifier")


def probe_region(region, params):
    """A region's database and services, as the controller sees them."""
    timeout = params["probe_timeout"]
    result = {"reachable": False, "role": "unknown", "error": None}
    why = _failover.pg_ping(region["address"], region["pg_port"], timeout)
    if why is None and HAS_PSYCOPG2:
        try:
            conn = psycopg2.connect(host=region["address"], port=region["pg_port"], user=params["login_user"],
                                    password=params["login_password"], dbname=params["login_db"],
                                    connect_timeout=2, application_name="cloudphoenix-failover-preflight")
            try:
                conn.autocommit = True
                status = node_status(conn)
                result = dict((key, status.get(key)) for key in KEEP)
            finally:
                conn.close()
        except psycopg2.Error as exc:
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if why is not None:
        result["error"] = why
    result["services_listening"] = _failover.tcp_listening(region["address"], region["service_ports"], timeout)
    return result


def main():
    started_at = time.time()
    spec = provider_argument_spec()
    spec.update(
        target_region=dict(type="str", required=True),
        regions=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            address=dict(type="str", required=True),
            pg_port=dict(type="int", default=5432),
            service_ports=dict(type="list", elements="int", default=[]),
        )),
        login_user=dict(type="str", default="postgres"),
        login_password=dict(type="str", no_log=True),
        login_db=dict(type="str", default="postgres"),
        probe_timeout=dict(type="float", default=0.5),
        fencing_record=dict(type="str", required=True),
        records=dict(type="list", elements="dict", required=True),
        max_data_loss_bytes=dict(type="int", default=1048576),
        allow_data_loss=dict(type="bool", default=False),
        takeover=dict(type="bool", default=False),
        mode=dict(type="str", default="failover", choices=["failover", "switchover", "failback"]),
        claim=dict(type="bool", default=False),
        claim_ttl=dict(type="int", default=5),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **PROVIDER_RULES)
    check_provider_options(module)
    params = module.params
    result = dict(changed=False, started_at=started_at, regions={})
    if not HAS_PSYCOPG2:
        module.fail_json(msg="failover_preflight needs psycopg2 on the controller", **result)
    if params["max_data_loss_bytes"] < 0 or params["probe_timeout"] <= 0:
        module.fail_json(msg="max_data_loss_bytes must be >= 0 and probe_timeout > 0; nothing was changed", **result)
    names = [region["name"] for region in params["regions"]]
    if len(set(names)) != len(names):
        module.fail_json(msg="regions lists a name twice: %s; nothing was changed" % ", ".join(names), **result)

    try:
        desired = _dns.normalize_records(params["records"], params["zone"], 300)
        fencing_key = (_dns.absolute_name(params["fencing_record"]), "TXT")
        provider = build_provider(params)
    except _dns.ValidationError as exc:
        module.fail_json(msg="preflight: %s; nothing was changed" % exc.msg, **result)

    # the regions' databases in parallel with DNS: each costs at most probe_timeout when it does not answer
    with ThreadPoolExecutor(max_workers=len(names) + 1) as pool:
        futures = dict((region["name"], pool.submit(probe_region, region, params)) for region in params["regions"])

        def read_dns():
            if provider.name == "route53":
                _dns.retry_call(provider.resolve_zone, params["timeout"])
            return _dns.retry_call(lambda: provider.read([fencing_key, *desired]), params["timeout"], provider=provider)

        dns_future = pool.submit(read_dns)
        regions = dict((name, future.result()) for name, future in futures.items())
        result["regions"] = regions
        try:
            current = dns_future.result()
        except (_dns.DnsError, RetryBudgetExceeded) as exc:
            module.fail_json(msg="preflight: the DNS provider (%s) does not answer: %s; nothing was changed"
                             % (params["provider"], getattr(exc, "msg", None) or exc), **result)
    fencing_values = (current.get(fencing_key) or {}).get("values") or []
    fencing_texts = [_failover.unquote_txt(value) for value in fencing_values]
    result["dns"] = {"fencing": fencing_texts[0] if len(fencing_texts) == 1 else (fencing_texts or None),
                     "records": [_dns.public(current.get(key), key) for key in desired]}
    dns_current = dict((key, tuple(current[key]["values"]) if current.get(key) else None) for key in desired)
    dns_desired = dict((key, tuple(rrset["values"]) if rrset else None) for key, rrset in desired.items())
    try:
        fencing_text = _failover.active_value(fencing_values, fencing_key[0])
        plan = _failover.decide(
            params["target_region"], regions, fencing_text, dns_current, dns_desired,
            dict((name, probe["services_listening"]) for name, probe in regions.items()),
            params["max_data_loss_bytes"], params["allow_data_loss"], _failover.run_owner(),
            mode=params["mode"], takeover=params["takeover"], record=fencing_key[0])
    except _failover.PreflightError as exc:
        result.update(exc.details)
        module.fail_json(msg="preflight: " + exc.msg, **result)
    result["plan"] = plan
    result["msg"] = plan["msg"]
    result["decided_at"] = time.time()
    if params["claim"] and plan["status"] != "done" and plan["claim"]["needed"]:
        claim(module, provider, plan, params, result)
    module.exit_json(**result)


def claim(module, provider, plan, params, result):
    """The claim: compare-and-swap of the fencing record, the runbook's first change (nothing else changed)."""
    name = params["fencing_record"]
    try:
        desired = _dns.normalize_records([{"name": name, "type": "TXT", "ttl": params["claim_ttl"],
                                           "values": [plan["claim"]["value"]]}], params["zone"], params["claim_ttl"])
        expect = _dns.normalize_expect([{"name": name, "type": "TXT", "values": [plan["claim"]["expect"]]}],
                                       params["zone"])
        outcome = _dns.switch(provider, desired, expect=expect, check_mode=module.check_mode,
                              retry_timeout=params["timeout"], log=module.debug)
    except _dns.ConflictError as exc:
        now = [value for record in exc.details.get("current", []) for value in record.get("values", [])]
        result.update(conflict=True, current=exc.details.get("current", []))
        fail(module, result, "claim lost: the fencing record now says %s; another run is doing this %s. This run "
                             "stops here; it changed nothing." % (", ".join(now) or "something else", params["mode"]))
    except (_dns.DnsError, RetryBudgetExceeded) as exc:
        fail(module, result, "claim failed, nothing else was changed: %s" % (getattr(exc, "msg", None) or exc))
    result["claim"] = {"cas": outcome["cas"], "changed": outcome["changed"], "value": plan["claim"]["value"],
                       "claimed_at": time.time()}
    result["changed"] = outcome["changed"]


def fail(module, result, msg):
    """Fail with msg; it replaces the plan's message already in result (a second msg= would be a TypeError)."""
    module.fail_json(**dict(result, msg=msg))


if __name__ == "__main__":
    main()
