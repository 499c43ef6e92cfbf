#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: service_check
short_description: Check many HTTP endpoints concurrently, optionally resolving through a given DNS server
version_added: "1.0.0"
description:
  - Sends one request per endpoint, all endpoints at once on a thread pool, and compares each
    answer with the expected status codes, a body regular expression and JSON field values.
  - A failed attempt (connection refused, timeout, DNS failure, wrong answer) is retried with
    jittered exponential backoff until the endpoint's O(deadline) or O(max_attempts); a rejected
    TLS certificate is not retried.
  - With O(dns_server), each attempt resolves the URL's host name through that server and connects
    to the answer, keeping the C(Host) header and the TLS SNI name of the URL, so a check sees
    what a client of that DNS server sees (for example after a DNS failover).
  - The module never changes anything it manages, so RV(ignore:changed) is always V(false). A request
    with a method other than C(GET), C(HEAD) or C(OPTIONS) is still a request that the service may act
    on (for example the write of a write-then-read check); in check mode such requests are not sent
    and their results say so, while read-only requests are still checked.
  - Request headers (for example C(Authorization)) are C(no_log) and are never copied into results
    or error messages.
author:
  - CloudPhoenix engineers (@cloudphoenix)
requirements:
  - dnspython (only when O(dns_server) or O(endpoints[].dns_server) is set)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Read-only requests are sent in check mode too; other methods are skipped.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  endpoints:
    description:
      - The endpoints to check. Each inherits the module-level value of an option it does not set.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: A unique name for the endpoint, used in results and messages. Defaults to O(endpoints[].url).
        type: str
      url:
        description:
          - C(http://) or C(https://) URL.
          - Credentials in the URL are refused; send them in O(endpoints[].headers).
        type: str
        required: true
      method:
        description: HTTP method.
        type: str
        choices: [GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE]
        default: GET
      headers:
        description: Request headers, merged over the module-level O(headers) (case-insensitive; the endpoint wins).
        type: dict
      body:
        description: Raw request body. Mutually exclusive with O(endpoints[].json_body).
        type: str
      json_body:
        description: A value sent as a JSON request body with C(Content-Type) C(application/json).
        type: raw
      expect_status:
        description: Status codes that count as success. Defaults to the module-level O(expect_status).
        type: list
        elements: int
      expect_body_regex:
        description: A Python regular expression the response body must contain (C(re.search)).
        type: str
      expect_json:
        description:
          - Expected JSON field values, as a mapping of dotted path to value; all-digit parts index
            lists (C(items.0.sku)). Values compare as JSON (V(true) is not V(1)).
        type: dict
      capture:
        description:
          - Dotted JSON paths whose values are returned in RV(endpoints[].captured), for example the
            id of a created resource to read back in a later task. A missing field fails the check.
        type: list
        elements: str
      timeout:
        description: Seconds one attempt may take. Defaults to the module-level O(timeout).
        type: float
      deadline:
        description: Seconds all attempts of this endpoint may take. Defaults to the module-level O(deadline).
        type: float
      max_attempts:
        description: Most attempts for this endpoint. Defaults to the module-level O(max_attempts).
        type: int
      dns_server:
        description: IP address of the DNS server to resolve this endpoint's host through.
        type: str
      dns_port:
        description: Port of O(endpoints[].dns_server).
        type: int
      validate_certs:
        description: Verify the TLS certificate against the URL's host name.
        type: bool
      ca_path:
        description: PEM file of the CA certificates to trust for this endpoint.
        type: path
      expect_address:
        description:
          - Addresses the host name must resolve to (for example the active region's address after a
            DNS failover). Checked before connecting; a wrong answer is a failed attempt and nothing is sent.
        type: list
        elements: str
  headers:
    description: Headers sent to every endpoint (endpoints may override them).
    type: dict
    default: {}
  expect_status:
    description: Status codes that count as success for endpoints that do not say.
    type: list
    elements: int
    default: [200]
  timeout:
    description: Seconds one attempt may take (a connect, a DNS lookup, a read).
    type: float
    default: 5
  deadline:
    description: Seconds all attempts of one endpoint may take, backoff included.
    type: float
    default: 30
  max_attempts:
    description: Most attempts per endpoint; unset means as many as fit in O(deadline).
    type: int
  dns_server:
    description:
      - IP address of a DNS server to resolve every endpoint's host name through (each attempt
        asks again, without caching). Unset means the system resolver. IP-literal hosts are not resolved.
    type: str
  dns_port:
    description: Port of O(dns_server).
    type: int
    default: 53
  validate_certs:
    description:
      - Verify TLS certificates, against the URL's host name (also when O(dns_server) gives the address).
    type: bool
    default: true
  ca_path:
    description: PEM file of the CA certificates to trust instead of the system's.
    type: path
  expect_address:
    description: Addresses every endpoint's host must resolve to, for endpoints that do not say.
    type: list
    elements: str
  concurrency:
    description: Most endpoints checked at the same time.
    type: int
    default: 16
  backoff_base:
    description: Seconds of the first retry's backoff ceiling; each retry doubles it (full jitter).
    type: float
    default: 0.1
  backoff_max:
    description: Largest backoff ceiling in seconds.
    type: float
    default: 2.0
  fail_on_error:
    description:
      - Fail the task when any endpoint fails, with a message naming every failing endpoint and why.
      - With V(false) the task succeeds and RV(all_ok) and RV(failed_endpoints) tell the story.
    type: bool
    default: true
seealso:
  - module: ansible.builtin.uri
"""

EXAMPLES = r"""
- name: Both services of the east region are alive and ready
  cloudphoenix.stack.service_check:
    deadline: 20
    endpoints:
      - name: orders-ready
        url: http://127.0.10.1:8080/readyz
        expect_json:
          database.writable: true
      - name: documents-health
        url: http://127.0.10.1:8081/healthz

- name: The public names answer, resolved through the lab's DNS server
  cloudphoenix.stack.service_check:
    dns_server: 127.0.0.1
    dns_port: 5353
    endpoints:
      - url: http://api.phoenix.test:8080/healthz
      - url: http://docs.phoenix.test:8081/healthz
        expect_body_regex: ok

- name: After a DNS failover, wait until the public names answer from the west region
  cloudphoenix.stack.service_check:
    dns_server: 127.0.0.1
    dns_port: 5353
    expect_address: [127.0.20.1]
    deadline: 60
    endpoints:
      - url: http://api.phoenix.test:8080/readyz
      - url: http://docs.phoenix.test:8081/readyz

- name: Write an order through the public name
  cloudphoenix.stack.service_check:
    dns_server: 127.0.0.1
    dns_port: 5353
    headers:
      Authorization: "Bearer {{ orders_token }}"
    endpoints:
      - name: create-order
        url: http://api.phoenix.test:8080/orders
        method: POST
        headers:
          Idempotency-Key: verify-0001
        json_body:
          customer: verify
          items:
            - sku: VERIFY-1
              quantity: 1
        expect_status: [200, 201]
        capture: [id]
  register: created

- name: Read it back
  cloudphoenix.stack.service_check:
    dns_server: 127.0.0.1
    dns_port: 5353
    endpoints:
      - name: read-order
        url: "http://api.phoenix.test:8080/orders/{{ created.endpoints[0].captured.id }}"
        expect_json:
          customer: verify

- name: Report without failing
  cloudphoenix.stack.service_check:
    fail_on_error: false
    max_attempts: 1
    endpoints:
      - url: http://127.0.20.1:8080/healthz
  register: west

- name: Show it
  ansible.builtin.debug:
    msg: "west is {{ 'up' if west.all_ok else 'down: ' ~ west.failed_endpoints | join(', ') }}"
"""

RETURN = r"""
all_ok:
  description: Whether every endpoint met its expectations (skipped ones count as met).
  returned: always
  type: bool
  sample: true
failed_endpoints:
  description: Names of the endpoints that failed.
  returned: always
  type: list
  elements: str
  sample: []
msg:
  description: A summary naming every failing endpoint and why.
  returned: always
  type: str
  sample: "1 of 2 endpoints failed: orders: connection refused (127.0.10.1:8080) (gave up after 7 attempts in 5.0s)"
endpoints:
  description: One result per endpoint, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The endpoint's name.
      type: str
      sample: orders-ready
    url:
      description: The URL checked.
      type: str
      sample: http://api.phoenix.test:8080/readyz
    method:
      description: The HTTP method.
      type: str
      sample: GET
    ok:
      description: Whether the endpoint met its expectations.
      type: bool
      sample: true
    status:
      description: HTTP status of the last attempt, null when no answer came.
      type: int
      sample: 200
    latency_ms:
      description: Milliseconds the last attempt took (DNS lookup, connect, request, body).
      type: float
      sample: 3.2
    elapsed_ms:
      description: Milliseconds all attempts took, backoff included.
      type: float
      sample: 3.4
    attempts:
      description: Number of attempts made.
      type: int
      sample: 1
    resolved_address:
      description: The address the last attempt connected to (the DNS answer with O(dns_server)), or would have.
      type: str
      sample: 127.0.20.1
    error:
      description: Why the endpoint failed (the last attempt's problem and the attempt count), null when ok.
      type: str
      sample: "status 503, expected 200 (body: {\"status\": \"not ready\"}) (gave up after 4 attempts in 2.0s)"
    captured:
      description: Values of the O(endpoints[].capture) paths from the JSON answer.
      type: dict
      sample: {"id": 42}
    skipped:
      description: True when the request was not sent (a non-read-only method in check mode).
      type: bool
      sample: false
    msg:
      description: Why a skipped request was not sent.
      type: str
      returned: when skipped
      sample: "not sent in check mode: POST is not a read-only method"
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cloudphoenix.stack.plugins.module_utils._http import (
    DNSPYTHON_IMPORT_ERROR,
    HAS_DNSPYTHON,
    CheckSpecError,
    build_specs,
    run_checks,
    summary_message,
)

ENDPOINT_OPTIONS = dict(
    name=dict(type="str"),
    url=dict(type="str", required=True),
    method=dict(type="str", default="GET", choices=["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]),
    headers=dict(type="dict", no_log=True),
    body=dict(type="str"),
    json_body=dict(type="raw"),
    expect_status=dict(type="list", elements="int"),
    expect_body_regex=dict(type="str"),
    expect_json=dict(type="dict"),
    capture=dict(type="list", elements="str"),
    timeout=dict(type="float"),
    deadline=dict(type="float"),
    max_attempts=dict(type="int"),
    dns_server=dict(type="str"),
    dns_port=dict(type="int"),
    validate_certs=dict(type="bool"),
    ca_path=dict(type="path"),
    expect_address=dict(type="list", elements="str"),
)

INHERITED = ("headers", "expect_status", "timeout", "deadline", "max_attempts", "dns_server", "dns_port",
             "validate_certs", "ca_path", "expect_address")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            endpoints=dict(type="list", elements="dict", required=True, options=ENDPOINT_OPTIONS,
                           mutually_exclusive=[("body", "json_body")]),
            headers=dict(type="dict", default={}, no_log=True),
            expect_status=dict(type="list", elements="int", default=[200]),
            timeout=dict(type="float", default=5.0),
            deadline=dict(type="float", default=30.0),
            max_attempts=dict(type="int"),
            dns_server=dict(type="str"),
            dns_port=dict(type="int", default=53),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
            expect_address=dict(type="list", elements="str"),
            concurrency=dict(type="int", default=16),
            backoff_base=dict(type="float", default=0.1),
            backoff_max=dict(type="float", default=2.0),
            fail_on_error=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    problems = []
    if params["concurrency"] < 1:
        problems.append("concurrency must be at least 1")
    if params["backoff_base"] < 0 or params["backoff_max"] < 0:
        problems.append("backoff_base and backoff_max must not be negative")
    try:
        specs = build_specs(params["endpoints"], dict((key, params[key]) for key in INHERITED))
    except CheckSpecError as exc:
        problems.extend(exc.problems)
    if problems:
        if not HAS_DNSPYTHON and any("dnspython" in p for p in problems):
            module.fail_json(msg=missing_required_lib("dnspython"), exception=str(DNSPYTHON_IMPORT_ERROR),
                             problems=problems)
        module.fail_json(msg="service_check: bad input, nothing was sent: " + "; ".join(problems),
                         problems=problems)

    results = run_checks(specs, concurrency=params["concurrency"], backoff_base=params["backoff_base"],
                         backoff_max=params["backoff_max"], check_mode=module.check_mode)
    failed = [r["name"] for r in results if not r["ok"]]
    outcome = dict(changed=False, all_ok=not failed, failed_endpoints=failed, endpoints=results,
                   msg=summary_message(results))
    if failed and params["fail_on_error"]:
        module.fail_json(**outcome)
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
