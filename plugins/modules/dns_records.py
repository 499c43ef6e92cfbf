#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: dns_records
short_description: Switch a set of DNS records atomically (Route 53 or RFC 2136), with compare-and-swap
version_added: 1.0.0
description:
  - Applies a list of records as ONE atomic change, one Route 53 C(ChangeResourceRecordSets) batch or one
    RFC 2136 UPDATE message.
  - With O(expect) the change is a compare-and-swap, if any record's current values differ from the
    expected ones, the module fails and changes nothing. The server enforces it too (RFC 2136 update
    prerequisites; Route 53 DELETE of the exact old record set plus CREATE in the same batch), so two
    concurrent runs cannot both win.
  - With O(require) the change is applied only while other records, which the call does not change, hold
    exactly the given values (for example a fencing record naming the caller's run). Checked on every call,
    also when nothing would change, and sent with the change (RFC 2136 prerequisites; Route 53 DELETE plus
    CREATE of the identical record set in the same batch), so a record that moves between the read and the
    write makes the server refuse the whole change. The task then fails with C(requirement_failed=true).
  - With O(wait=true) it waits until every authoritative server answers the new values.
  - Idempotent, already as wanted means C(changed=false) and nothing is sent. Supports check mode and diff;
    returns RV(before) so a caller can roll back.
  - Every record is validated (names, types, TTLs, addresses) before anything is sent.
author: CloudPhoenix engineers (@cloudphoenix)
extends_documentation_fragment:
  - cloudphoenix.stack.dns
attributes:
  check_mode:
    support: full
    description: Reads the current records and reports what would change and whether O(require) holds (a failed
      requirement fails the task, as it would without check mode); sends nothing.
  diff_mode:
    support: full
    description: Before/after in zone-file form.
options:
  records:
    description:
      - The records to hold after the change. Each entry is one record set (name and type).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Absolute owner name inside O(zone), with or without the trailing dot.
        type: str
        required: true
      type:
        description: Record type.
        type: str
        required: true
        choices: [A, AAAA, CNAME, TXT, MX, SRV, CAA, PTR, NS]
      values:
        description:
          - Values in presentation form. TXT values without quotes are one string (quoted for you);
            values starting with a quote are taken as-is.
          - Required with O(records[].state=present).
        type: list
        elements: str
        default: []
      ttl:
        description: TTL in seconds; defaults to O(ttl).
        type: int
      state:
        description: V(absent) deletes the record set.
        type: str
        choices: [present, absent]
        default: present
  ttl:
    description: TTL for records that give none.
    type: int
    default: 300
  expect:
    description:
      - Compare-and-swap, the values each listed record must hold right now (TTL is compared only if given).
        An empty O(expect[].values) list means the record must not exist.
      - If the records are already as wanted, nothing is sent and RV(cas) is V(already_applied); give the
        fencing record a value unique to the caller (for example a run ID) so that "already as wanted"
        can only mean the caller's own earlier success.
      - Every record listed here must also be in O(records). A record the call does not change goes in O(require).
    type: list
    elements: dict
    suboptions:
      name:
        description: Owner name.
        type: str
        required: true
      type:
        description: Record type.
        type: str
        required: true
        choices: [A, AAAA, CNAME, TXT, MX, SRV, CAA, PTR, NS]
      values:
        description: Expected values; empty means absent.
        type: list
        elements: str
        default: []
      ttl:
        description: Expected TTL; not compared when omitted.
        type: int
  require:
    description:
      - Records this call does NOT change that must hold exactly these values right now; they are not changed.
        If any differs (or is absent), the task fails with C(requirement_failed=true) and changes nothing, also
        when the records in O(records) are already as wanted.
      - The requirement travels with the change, atomically where the provider allows it. RFC 2136, value-dependent
        "RRset exists" prerequisites in the same UPDATE (the server answers NXRRSET and applies nothing).
        Route 53, a DELETE of the exact record set read followed by a CREATE of the identical record set, at the
        head of the batch (Route 53 rejects the whole batch when the DELETE no longer matches).
      - With O(allow_split=true) every batch carries the requirement, but the change as a whole is not atomic, a
        record that moves between two batches stops the later ones only.
      - Values are compared as a set, exactly (no extra values); TTL is not compared. A record listed here must
        not be in O(records) (use O(expect) for a record the call changes) and must exist.
    type: list
    elements: dict
    suboptions:
      name:
        description: Owner name.
        type: str
        required: true
      type:
        description: Record type.
        type: str
        required: true
        choices: [A, AAAA, CNAME, TXT, MX, SRV, CAA, PTR, NS]
      values:
        description: The values the record must hold, all of them; at least one.
        type: list
        elements: str
        required: true
  allow_split:
    description:
      - Route 53 refuses batches over 1,000 ResourceRecord elements or 32,000 value characters (UPSERT counts
        twice). By default such a change is refused before anything is sent. V(true) applies it in several
        batches (not atomic as a whole); RV(batches) says which applied. The O(expect) guard is in the
        first batch, the O(require) guard in every batch.
    type: bool
    default: false
  wait:
    description:
      - Wait until every authoritative server answers the new values and TTLs.
      - O(provider=rfc2136), the servers are the zone's NS records (addresses looked up at O(server), port
        O(port)) unless O(wait_servers) is given.
      - O(provider=route53), waits for C(GetChange) status C(INSYNC) (Route 53 reports INSYNC once all of
        its authoritative servers serve the change), then queries O(wait_servers) if given.
    type: bool
    default: false
  wait_servers:
    description: Servers to query while waiting, V(host), V(host:port) or V([v6]:port); port defaults to O(port).
    type: list
    elements: str
  wait_timeout:
    description:
      - Seconds from the start of the call until waiting gives up with an error listing what each server serves.
    type: float
    default: 60
notes:
  - Route 53 routing-policy (weighted, failover, latency...) and alias record sets are not managed; the module
    refuses to touch them.
  - Route 53 emulators such as moto do not enforce the exact-match DELETE that makes the Route 53
    compare-and-swap and O(require) safe under concurrency; real Route 53 does.
"""

EXAMPLES = r"""
- name: Claim the active region (compare-and-swap on the fencing record)
  cloudphoenix.stack.dns_records:
    provider: rfc2136
    server: 127.0.0.1
    port: 5353
    zone: phoenix.test
    key_name: cloudphoenix-lab
    key_secret: "{{ lab_tsig_secret }}"
    records:
      - name: _active.phoenix.test
        type: TXT
        ttl: 5
        values: ["region=west epoch=2 run={{ run_id }}"]
    expect:
      - name: _active.phoenix.test
        type: TXT
        values: ["region=east epoch=1"]
  register: claim

- name: Point the public names at west, only while this run still holds the claim
  cloudphoenix.stack.dns_records:
    provider: rfc2136
    server: 127.0.0.1
    port: 5353
    zone: phoenix.test
    key_name: cloudphoenix-lab
    key_secret: "{{ lab_tsig_secret }}"
    records:
      - {name: api.phoenix.test, type: A, ttl: 5, values: [127.0.20.1]}
    require:
      - {name: _active.phoenix.test, type: TXT, values: ["region=west epoch=2 run={{ run_id }}"]}

- name: Point the service names at the west region, wait for every authoritative server
  cloudphoenix.stack.dns_records:
    provider: route53
    zone: phoenix.example.com
    records:
      - {name: api.phoenix.example.com, type: A, ttl: 5, values: [10.20.0.10]}
      - {name: docs.phoenix.example.com, type: A, ttl: 5, values: [10.20.0.11]}
    wait: true
    wait_timeout: 120
  register: switched

- name: Roll back to what was there before
  cloudphoenix.stack.dns_records:
    provider: route53
    zone: phoenix.example.com
    records: "{{ switched.before }}"
"""

RETURN = r"""
before:
  description:
    - Every record in O(records) as it was before the call, in the O(records) format (absent ones have
      C(state=absent)), ready to be passed back as O(records) to roll back, or as O(expect).
  returned: success, and on failures after the read (conflict, wait timeout, failed batch)
  type: list
  elements: dict
  sample: [{"name": "api.phoenix.test", "type": "A", "ttl": 5, "values": ["127.0.10.1"], "state": "present"}]
changes:
  description:
    - One entry per record that changed (or would change in check mode), C(action) is V(create), V(update) or
      V(delete).
    - The values before the change are in RV(before), the values after are the ones in O(records); diff mode
      shows both in zone-file form. They are not repeated here, for 1,000 records that would add ~40% to the
      result, which Ansible scrubs and serialises node by node.
  returned: success
  type: list
  elements: dict
  sample: [{"name": "api.phoenix.test", "type": "A", "action": "update"}]
cas:
  description:
    - Compare-and-swap outcome when O(expect) is given, V(swapped) (this call changed it), V(matched)
      (check mode, would swap), V(already_applied) (records already as wanted, nothing sent). A conflict fails
      the task with C(conflict=true) and RV(current).
  returned: success
  type: str
  sample: swapped
conflict:
  description: True when the task failed because current values differ from O(expect). Nothing was changed.
  returned: failure
  type: bool
requirement:
  description:
    - V(held) when O(require) is given and held, when read and, if a change was sent, on the server with it
      (in check mode, when read). A requirement that does not hold fails the task with RV(requirement_failed).
  returned: success
  type: str
  sample: held
requirement_failed:
  description:
    - True when the task failed because a record in O(require) does not hold the required values, found when
      reading or refused by the server with the change. Nothing was changed (with O(allow_split), the batches
      before the refused one were applied, see RV(batches)). RV(current) says what the records hold now.
  returned: failure
  type: bool
current:
  description: On a conflict or a failed requirement, the current values of the records involved.
  returned: failure
  type: list
  elements: dict
batches:
  description:
    - The batches sent, with C(status) V(planned) (check mode), V(applied), V(failed), V(conflict),
      V(requirement_failed) or V(planned) for batches never sent after a failure; Route 53 adds C(change_id).
  returned: success and failure after planning
  type: list
  elements: dict
  sample: [{"index": 0, "changes": 2, "status": "applied", "change_id": "C2682N5HXP0BZ4", "change_status": "INSYNC"}]
wait:
  description:
    - Per authoritative server, whether it serves the new values (C(in_sync)), polls, and what it serves when not.
    - O(provider=rfc2136) adds C(via), how the server was read, V(queries) (one pipelined query per record) or
      V(transfer) (one zone transfer per poll, used from 25 records on; TSIG-signed when a key is given; a server
      that refuses it is asked per name).
  returned: when O(wait=true)
  type: list
  elements: dict
  sample: [{"server": "127.0.0.1:5353", "in_sync": true, "polls": 1, "serves": null, "via": "queries"}]
retries:
  description: Transient errors that were retried (attempt, error, delay).
  returned: success
  type: list
  elements: dict
timings:
  description: Seconds spent reading, applying, waiting and in total.
  returned: success
  type: dict
  sample: {"read": 0.002, "apply": 0.004, "wait": 0.003, "total": 0.009}
zone:
  description: The zone name (absolute).
  returned: always
  type: str
  sample: phoenix.test.
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns
from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_providers import (
    PROVIDER_RULES,
    build_provider,
    check_provider_options,
    parse_servers,
    provider_argument_spec,
)


def main():
    record_types = list(_dns.SUPPORTED_TYPES)
    argument_spec = provider_argument_spec()
    argument_spec.update(
        records=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            type=dict(type="str", required=True, choices=record_types),
            values=dict(type="list", elements="str", default=[]),
            ttl=dict(type="int"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        )),
        ttl=dict(type="int", default=300),
        expect=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            type=dict(type="str", required=True, choices=record_types),
            values=dict(type="list", elements="str", default=[]),
            ttl=dict(type="int"),
        )),
        require=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            type=dict(type="str", required=True, choices=record_types),
            values=dict(type="list", elements="str", required=True),
        )),
        allow_split=dict(type="bool", default=False),
        wait=dict(type="bool", default=False),
        wait_servers=dict(type="list", elements="str"),
        wait_timeout=dict(type="float", default=60.0),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **PROVIDER_RULES)
    check_provider_options(module)
    params = module.params
    result = dict(changed=False, zone=None)

    # 1. validate everything before any network traffic
    try:
        desired = _dns.normalize_records(params["records"], params["zone"], params["ttl"])
        expect = _dns.normalize_expect(params["expect"], params["zone"])
        require = _dns.normalize_require(params["require"], params["zone"])
        _dns.check_guards(desired, expect, require)
        wait_servers = parse_servers(params["wait_servers"], params["port"])
        if params["wait_timeout"] <= 0:
            raise _dns.ValidationError("wait_timeout must be greater than 0")
        provider = build_provider(params)
    except _dns.DnsError as exc:  # ValidationError and client set-up errors: nothing was sent
        module.fail_json(msg=exc.msg, **result)

    # 2-4. read, decide, act (unless check mode), wait
    try:
        outcome = _dns.switch(
            provider, desired, expect=expect, check_mode=module.check_mode, wait=params["wait"],
            wait_servers=wait_servers, wait_timeout=params["wait_timeout"], allow_split=params["allow_split"],
            retry_timeout=params["timeout"], log=module.debug, require=require)
    except _dns.RequirementError as exc:
        applied = [b for b in exc.details.get("batches", []) if b.get("status") == "applied"]
        result.update(zone=provider.zone, changed=bool(applied), conflict=False, requirement_failed=True,
                      **exc.details)
        module.fail_json(msg=exc.msg, **result)
    except _dns.ConflictError as exc:
        result.update(zone=provider.zone, conflict=True, **exc.details)
        module.fail_json(msg=exc.msg, **result)
    except _dns.WaitTimeout as exc:
        # the change itself was applied: say so, so a caller knows it is not a no-op
        result.update(zone=provider.zone, changed=True, **exc.details)
        module.fail_json(msg="the change was applied, but " + exc.msg, **result)
    except _dns.DnsError as exc:
        applied = [b for b in exc.details.get("batches", []) if b.get("status") == "applied"]
        result.update(zone=provider.zone, changed=bool(applied), **exc.details)
        if "cas" in exc.details:  # raised while waiting: the change itself is in place
            module.fail_json(msg="the change was applied, but waiting failed: " + exc.msg, **result)
        module.fail_json(msg=exc.msg, **result)
    except _dns.RetryBudgetExceeded as exc:
        result.update(zone=provider.zone)
        module.fail_json(msg="could not reach the DNS provider within timeout=%ss: %s" % (params["timeout"], exc),
                         **result)

    # 5. report
    result.update(outcome)
    result["zone"] = provider.zone
    if module._diff:
        result["diff"] = dict(
            before_header="%s (%s)" % (provider.zone, params["provider"]),
            after_header="%s (%s)" % (provider.zone, params["provider"]),
            before=_dns.zone_lines(_current_of(outcome["before"])),
            after=_dns.zone_lines([desired[key] for key in desired]),
        )
    module.exit_json(**result)


def _current_of(public_records):
    return [None if r["state"] == "absent" else
            {"name": r["name"] + ".", "type": r["type"], "ttl": r["ttl"], "values": r["values"]}
            for r in public_records]


if __name__ == "__main__":
    main()
