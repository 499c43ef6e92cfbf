#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: dns_records_info
short_description: Show DNS records as each authoritative server serves them (Route 53 or RFC 2136)
version_added: 1.0.0
description:
  - Reads the values and TTL of the given records from the provider (the primary O(server) for RFC 2136, the
    Route 53 API for Route 53), and from every authoritative server, with each server's SOA serial.
  - An unreachable server is reported (C(reachable=false)) and does not fail the task.
author: CloudPhoenix engineers (@cloudphoenix)
extends_documentation_fragment:
  - cloudphoenix.stack.dns
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
options:
  records:
    description: The record sets to look up.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Absolute owner name.
        type: str
        required: true
      type:
        description: Record type.
        type: str
        required: true
        choices: [A, AAAA, CNAME, TXT, MX, SRV, CAA, PTR, NS]
  servers:
    description:
      - Authoritative servers to query, V(host), V(host:port) or V([v6]:port); the port defaults to O(port).
      - Default for O(provider=rfc2136), the zone's NS records (addresses looked up at O(server)) plus O(server).
        Default for O(provider=route53), none (the API answer only).
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: What does every authoritative server say about the active region?
  cloudphoenix.stack.dns_records_info:
    provider: rfc2136
    server: 127.0.0.1
    port: 5353
    zone: phoenix.test
    records:
      - {name: _active.phoenix.test, type: TXT}
      - {name: api.phoenix.test, type: A}
  register: dns_now

- name: Fail when the servers disagree
  ansible.builtin.assert:
    that: dns_now.consistent
"""

RETURN = r"""
zone:
  description: The zone (absolute name).
  returned: success
  type: str
  sample: phoenix.test.
records:
  description:
    - The records as the provider holds them (RFC 2136, the primary O(server); Route 53, the API), in the format
      of the dns_records O(cloudphoenix.stack.dns_records#module:records) option, usable as its
      O(cloudphoenix.stack.dns_records#module:expect).
    - Empty when the primary server is unreachable (see RV(source_error)).
  returned: success
  type: list
  elements: dict
  sample: [{"name": "_active.phoenix.test", "type": "TXT", "ttl": 5, "values": ["\"region=east epoch=1\""],
            "state": "present"}]
source_error:
  description: Why RV(records) is empty (the primary server did not answer), else null.
  returned: success
  type: str
servers:
  description: One entry per authoritative server queried.
  returned: success
  type: list
  elements: dict
  contains:
    server:
      description: V(host:port).
      type: str
    reachable:
      description: Whether the server answered at all.
      type: bool
    error:
      description: What went wrong with this server, else null.
      type: str
    soa_serial:
      description: The zone's SOA serial as this server serves it.
      type: int
    records:
      description: The records as this server serves them (same format as RV(records)).
      type: list
      elements: dict
consistent:
  description: True when every reachable server serves exactly RV(records) and none is unreachable.
  returned: success
  type: bool
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
    argument_spec = provider_argument_spec()
    argument_spec.update(
        records=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            type=dict(type="str", required=True, choices=list(_dns.SUPPORTED_TYPES)),
        )),
        servers=dict(type="list", elements="str"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **PROVIDER_RULES)
    check_provider_options(module)
    params = module.params
    try:
        keys = list(_dns.normalize_expect(
            [dict(name=r["name"], type=r["type"], values=[]) for r in params["records"]], params["zone"]))
        servers = parse_servers(params["servers"], params["port"])
        provider = build_provider(params)
    except _dns.DnsError as exc:  # ValidationError and client set-up errors: nothing was sent
        module.fail_json(msg=exc.msg)

    try:
        outcome = _dns.inspect(provider, keys, servers or None, retry_timeout=params["timeout"])
    except _dns.DnsError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    except _dns.RetryBudgetExceeded as exc:
        module.fail_json(msg="could not reach the DNS provider within timeout=%ss: %s" % (params["timeout"], exc))
    module.exit_json(changed=False, **outcome)


if __name__ == "__main__":
    main()
