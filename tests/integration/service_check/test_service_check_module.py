"""service_check against a real gunicorn (and a real BIND9 for name resolution).

Every test runs the module file the way AnsiballZ does (tests.support.ansible.run_module).
No mocks: the HTTP server, the DNS server and the network errors are real.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.request
import uuid

import dns.query
import dns.tsigkeyring
import dns.update
import pytest

from tests.support.ansible import run_module
from tests.support.net import free_port


def _tag() -> str:
    return uuid.uuid4().hex[:12]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own test server
        return json.loads(response.read())


def check(args: dict, **kwargs):
    return run_module("service_check", args, **kwargs)


def by_name(result) -> dict:
    return {endpoint["name"]: endpoint for endpoint in result["endpoints"]}


def test_healthy_endpoints_pass_and_report(http_server):
    args = {"endpoints": [
        {"name": "health", "url": http_server.url("/healthz"), "expect_body_regex": "^ok$"},
        {"name": "ready", "url": http_server.url("/json"),
         "expect_json": {"status": "ok", "checks.database.writable": True, "items.0.sku": "A-1", "count": 1}},
        {"name": "head", "url": http_server.url("/healthz"), "method": "HEAD"},
    ]}
    result = check(args)
    assert not result.failed, result.result
    assert result["changed"] is False
    assert result["all_ok"] is True
    assert result["failed_endpoints"] == []
    assert result["msg"] == "all 3 endpoints passed"
    assert [e["name"] for e in result["endpoints"]] == ["health", "ready", "head"]  # input order kept
    for endpoint in result["endpoints"]:
        assert endpoint["ok"] is True
        assert endpoint["status"] == 200
        assert endpoint["attempts"] == 1
        assert endpoint["error"] is None
        assert endpoint["resolved_address"] == "127.0.0.1"
        assert isinstance(endpoint["latency_ms"], float)
        assert endpoint["latency_ms"] >= 0
    assert check(args)["changed"] is False  # read-only: never changed


def test_wrong_status_fails_naming_the_endpoint(http_server):
    args = {"max_attempts": 3, "backoff_base": 0.01, "endpoints": [
        {"name": "broken", "url": http_server.url("/status/503")},
        {"name": "fine", "url": http_server.url("/healthz")},
    ]}
    result = check(args)
    assert result.failed
    assert result["all_ok"] is False
    assert result["failed_endpoints"] == ["broken"]
    assert result["msg"].startswith(
        "1 of 2 endpoints failed: broken: status 503, expected 200 (body: status 503) (gave up after 3 attempts")
    broken = by_name(result)["broken"]
    assert broken["status"] == 503
    assert broken["attempts"] == 3
    assert "gave up after 3 attempts" in broken["error"]
    assert by_name(result)["fine"]["ok"] is True

    reported = check({**args, "fail_on_error": False})
    assert not reported.failed
    assert reported["all_ok"] is False
    assert reported["failed_endpoints"] == ["broken"]


def test_expected_status_list_accepts_any_listed(http_server):
    result = check({"endpoints": [{"url": http_server.url("/status/204"), "expect_status": [200, 204]}]})
    assert not result.failed, result["msg"]
    assert result["endpoints"][0]["status"] == 204


def test_body_mismatch(http_server):
    result = check({"max_attempts": 1, "endpoints": [
        {"name": "body", "url": http_server.url("/healthz"), "expect_body_regex": "^ready$"}]})
    assert result.failed
    assert "body: body does not match '^ready$'" in result["msg"]
    assert result["endpoints"][0]["status"] == 200


def test_json_field_mismatch_and_missing_field(http_server):
    result = check({"max_attempts": 1, "endpoints": [{"name": "ready", "url": http_server.url("/json"), "expect_json": {
        "checks.database.writable": False, "checks.queue.ok": True, "count": True, "status": "ok"}}]})
    assert result.failed
    error = result["endpoints"][0]["error"]
    assert "JSON field checks.database.writable is true, expected false" in error
    assert "JSON field checks.queue.ok missing (expected true)" in error
    assert "JSON field count is 1, expected true" in error  # JSON 1 is not true
    assert "JSON field status" not in error  # the matching field is not reported

    not_json = check({"max_attempts": 1, "endpoints": [
        {"url": http_server.url("/healthz"), "expect_json": {"status": "ok"}}]})
    assert "body is not JSON" in not_json["msg"]


def test_endpoint_down_retries_then_fails_within_deadline(http_server):
    port = free_port()  # nothing listens there
    result = check({"deadline": 2, "timeout": 0.5, "backoff_base": 0.05, "backoff_max": 0.3,
                    "endpoints": [{"name": "down", "url": f"http://127.0.0.1:{port}/healthz"}]})
    assert result.failed
    down = result["endpoints"][0]
    assert down["attempts"] > 1
    assert down["status"] is None
    assert down["error"].startswith(f"connection refused (127.0.0.1:{port}) (gave up after {down['attempts']} attempts")
    assert result["msg"].startswith("1 of 1 endpoints failed: down: connection refused")
    # The deadline bounds the retries (the module's own clock; generous slack for a busy machine).
    assert down["elapsed_ms"] <= 2000 + 1500


def test_retries_until_the_endpoint_recovers(http_server):
    tag = _tag()
    result = check({"backoff_base": 0.01, "endpoints": [{"url": http_server.url(f"/flaky/{tag}?fail=2")}]})
    assert not result.failed, result["msg"]
    assert result["endpoints"][0]["attempts"] == 3
    assert _get_json(http_server.url(f"/hits/{tag}")) == 3


def test_slow_endpoint_times_out(http_server):
    tag = _tag()
    result = check({"timeout": 0.5, "max_attempts": 1,
                    "endpoints": [{"name": "slow", "url": http_server.url(f"/slow/{tag}?seconds=3")}]})
    assert result.failed
    assert result["endpoints"][0]["error"].startswith("timed out after 0.50s (127.0.0.1:")
    assert result["endpoints"][0]["attempts"] == 1


def test_deadline_caps_the_attempt_timeout(http_server):
    tag = _tag()
    result = check({"timeout": 10, "deadline": 0.6,
                    "endpoints": [{"name": "slow", "url": http_server.url(f"/slow/{tag}?seconds=3")}]})
    assert result.failed
    assert result["endpoints"][0]["error"].startswith("timed out after 0.60s")


def test_endpoints_are_checked_concurrently(http_server):
    """All requests overlap on the server: the last one started before the first one ended."""
    tag = _tag()
    endpoints = [{"name": f"slow{i}", "url": http_server.url(f"/slow/{tag}?seconds=1&n={i}")} for i in range(6)]
    result = check({"timeout": 10, "endpoints": endpoints})
    assert not result.failed, result["msg"]
    spans = _get_json(http_server.url(f"/slow-log/{tag}"))
    assert len(spans) == 6
    assert max(span[0] for span in spans) < min(span[1] for span in spans)


def test_concurrency_limit_is_honoured(http_server):
    """With concurrency 1 the requests do not overlap: each starts after the previous ended."""
    tag = _tag()
    endpoints = [{"name": f"slow{i}", "url": http_server.url(f"/slow/{tag}?seconds=0.3&n={i}")} for i in range(3)]
    result = check({"concurrency": 1, "timeout": 10, "endpoints": endpoints})
    assert not result.failed, result["msg"]
    spans = sorted(_get_json(http_server.url(f"/slow-log/{tag}")))
    assert len(spans) == 3
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def _set_a(bind_server, name: str, address: str) -> None:
    keyring = dns.tsigkeyring.from_text({bind_server.key_name: bind_server.secret})
    update = dns.update.UpdateMessage(bind_server.zone, keyring=keyring, keyalgorithm=dns.tsig.HMAC_SHA256)
    update.replace(name, 5, "A", address)
    response = dns.query.tcp(update, bind_server.host, port=bind_server.port, timeout=5)
    assert response.rcode() == 0


def test_resolves_through_the_given_dns_server(http_server, bind_server):
    """The name exists only in the test's BIND: the check resolves it there, connects to the answer,
    keeps the Host header, and re-resolves on every call (follows a record change)."""
    name = f"svc-{_tag()}"
    fqdn = f"{name}.{bind_server.zone}"
    _set_a(bind_server, name, "127.0.0.1")
    url = f"http://{fqdn}:{http_server.port}/host"
    args = {"dns_server": bind_server.host, "dns_port": bind_server.port, "max_attempts": 1,
            "endpoints": [{"name": "public", "url": url, "capture": ["host"]}]}
    result = check(args)
    assert not result.failed, result["msg"]
    public = result["endpoints"][0]
    assert public["resolved_address"] == "127.0.0.1"
    assert public["captured"] == {"host": f"{fqdn}:{http_server.port}"}  # Host header is the name

    _set_a(bind_server, name, "127.0.0.2")  # nothing listens on 127.0.0.2:<port>
    moved = check(args)
    assert moved.failed
    assert moved["endpoints"][0]["resolved_address"] == "127.0.0.2"
    assert moved["endpoints"][0]["error"].startswith(f"connection refused (127.0.0.2:{http_server.port})")

    pinned = check({**args, "expect_address": ["127.0.0.1"]})
    assert pinned.failed
    assert pinned["endpoints"][0]["error"].startswith(
        f"{fqdn} resolved to 127.0.0.2, expected 127.0.0.1 (request not sent)")

    missing = check({**args, "endpoints": [{"name": "nx", "url": f"http://nope-{name}.{bind_server.zone}/"}]})
    assert missing.failed
    assert missing["endpoints"][0]["error"].startswith(
        f"DNS: nope-{name}.{bind_server.zone} does not exist (NXDOMAIN) at {bind_server.host}:{bind_server.port}")


def test_waits_for_a_dns_switch_within_the_deadline(http_server, bind_server):
    """Like a failover: the name points elsewhere first; the check retries (re-resolving each time)
    and passes once the record is switched, without sending a request to the old address."""
    tag = _tag()
    name = f"switch-{tag}"
    _set_a(bind_server, name, "127.0.0.2")
    args = {"dns_server": bind_server.host, "dns_port": bind_server.port, "deadline": 30,
            "backoff_base": 0.05, "backoff_max": 0.2, "expect_address": ["127.0.0.1"],
            "endpoints": [{"name": "public", "url": f"http://{name}.{bind_server.zone}:{http_server.port}/flaky/{tag}"}]}
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(result=check(args)))
    worker.start()
    time.sleep(1.0)
    _set_a(bind_server, name, "127.0.0.1")
    worker.join(timeout=60)
    result = outcome["result"]
    assert not result.failed, result["msg"]
    assert result["endpoints"][0]["attempts"] >= 2
    assert result["endpoints"][0]["resolved_address"] == "127.0.0.1"
    assert _get_json(http_server.url(f"/hits/{tag}")) == 1  # only the switched address got a request


def test_secret_headers_are_sent_but_never_returned(http_server):
    tag = _tag()
    token = http_server.token
    result = check({"headers": {"Authorization": token}, "endpoints": [
        {"name": "auth", "url": http_server.url(f"/auth/{tag}"), "headers": {"X-Api-Key": "sc-other-secret-77ab"}}]})
    assert not result.failed, result["msg"]  # 200 only when the server received the token
    output = result.stdout + result.stderr
    assert token not in output
    assert "sc-other-secret-77ab" not in output
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in output  # the invocation echo is masked

    wrong = check({"max_attempts": 1, "headers": {"Authorization": token + "-wrong"},
                   "endpoints": [{"name": "auth", "url": http_server.url(f"/auth/{tag}")}]})
    assert wrong.failed
    assert "status 401" in wrong["msg"]
    assert token not in wrong.stdout + wrong.stderr


def test_bad_header_value_is_refused_without_echoing_it(http_server):
    tag = _tag()
    token = http_server.token
    result = check({"endpoints": [{"name": "auth", "url": http_server.url(f"/auth/{tag}"),
                                   "headers": {"Authorization": token + "\r\nX-Injected: 1"}}]})
    assert result.failed
    assert "auth: header Authorization has an empty or multi-line value" in result["msg"]
    assert token not in result.stdout + result.stderr
    assert _get_json(http_server.url(f"/hits/{tag}")) == 0


def test_write_then_read_carries_a_field(http_server):
    key = f"verify-{_tag()}"
    created = check({"endpoints": [{
        "name": "create", "url": http_server.url("/orders"), "method": "POST",
        "headers": {"Idempotency-Key": key},
        "json_body": {"customer": "verify", "items": [{"sku": "V-1", "quantity": 1}]},
        "expect_status": [201], "capture": ["id", "content_type"]}]})
    assert not created.failed, created["msg"]
    captured = created["endpoints"][0]["captured"]
    assert captured["content_type"] == "application/json"
    read = check({"endpoints": [{"name": "read", "url": http_server.url(f"/orders/{captured['id']}"),
                                 "expect_json": {"customer": "verify", "items.0.sku": "V-1", "idempotency_key": key}}]})
    assert not read.failed, read["msg"]


def test_check_mode_still_checks_reads_and_skips_writes(http_server):
    read_tag, write_tag = _tag(), _tag()
    result = check({"endpoints": [
        {"name": "read", "url": http_server.url(f"/flaky/{read_tag}")},
        {"name": "write", "url": http_server.url(f"/flaky/{write_tag}"), "method": "POST"},
    ]}, check=True)
    assert not result.failed, result["msg"]
    assert result["changed"] is False
    read, write = by_name(result)["read"], by_name(result)["write"]
    assert read["ok"] is True and read["attempts"] == 1 and read["skipped"] is False
    assert write["skipped"] is True and write["attempts"] == 0
    assert write["msg"] == "not sent in check mode: POST is not a read-only method"
    assert result["msg"] == "all 2 endpoints passed (1 not sent in check mode)"
    assert _get_json(http_server.url(f"/hits/{read_tag}")) == 1
    assert _get_json(http_server.url(f"/hits/{write_tag}")) == 0

    failing = check({"max_attempts": 1, "endpoints": [{"name": "down", "url": http_server.url("/status/500")}]},
                    check=True)
    assert failing.failed  # check mode does not hide a failing service


@pytest.mark.parametrize(("endpoint", "message"), [
    ({"url": "ftp://127.0.0.1/x"}, "url scheme must be http or https, not 'ftp'"),
    ({"url": "http://user:pw@127.0.0.1/x"}, "url must not carry credentials"),
    ({"url": "http:///nohost"}, "url has no host"),
    ({"url": "http://127.0.0.1:99999/"}, "url is not valid"),
    ({"url": "http://127.0.0.1/", "expect_body_regex": "(unclosed"}, "expect_body_regex '(unclosed' does not compile"),
    ({"url": "http://127.0.0.1/", "expect_status": [42]}, "expect_status 42 is not an HTTP status"),
    ({"url": "http://127.0.0.1/", "timeout": 0}, "timeout must be greater than 0"),
    ({"url": "http://127.0.0.1/", "dns_server": "ns1.example"}, "dns_server must be an IP address"),
    ({"url": "http://127.0.0.1/", "dns_port": 70000}, "dns_port 70000 is not a port"),
    ({"url": "http://127.0.0.1/", "expect_json": {"a..b": 1}}, "has an empty part"),
    ({"url": "http://127.0.0.1/", "body": "x", "json_body": {"a": 1}}, "mutually exclusive"),
    ({"url": "http://127.0.0.1/", "method": "TRACE"}, "method"),
])
def test_bad_input_fails_before_any_request(http_server, endpoint, message):
    tag = _tag()
    good = {"name": "good", "url": http_server.url(f"/flaky/{tag}")}
    result = check({"endpoints": [good, {"name": "bad", **endpoint}]})
    assert result.failed
    assert message in result["msg"]
    assert "endpoints" not in result.result
    assert _get_json(http_server.url(f"/hits/{tag}")) == 0  # nothing was sent, not even the good one


def test_duplicate_names_are_refused(http_server):
    result = check({"endpoints": [{"name": "x", "url": http_server.url("/healthz")},
                                  {"name": "x", "url": http_server.url("/json")}]})
    assert result.failed
    assert "x: endpoint names must be unique" in result["msg"]


def test_https_through_dns_verifies_the_name_not_the_address(https_server, bind_server):
    """Connects to the address BIND gives, sends SNI and verifies the certificate for the URL's name
    (the certificate is for *.phoenix.test and holds no IP address)."""
    name = f"tls-{_tag()}"
    _set_a(bind_server, name, "127.0.0.1")
    url = f"https://{name}.{bind_server.zone}:{https_server.port}/host"
    base = {"dns_server": bind_server.host, "dns_port": bind_server.port, "max_attempts": 1,
            "ca_path": https_server.ca_file}
    result = check({**base, "endpoints": [{"name": "tls", "url": url, "capture": ["host"]}]})
    assert not result.failed, result["msg"]
    assert result["endpoints"][0]["resolved_address"] == "127.0.0.1"
    assert result["endpoints"][0]["captured"]["host"] == f"{name}.{bind_server.zone}:{https_server.port}"

    untrusted = check({**base, "max_attempts": None, "ca_path": None, "endpoints": [{"name": "tls", "url": url}]})
    assert untrusted.failed
    assert untrusted["endpoints"][0]["attempts"] == 1  # a certificate problem is not retried
    assert untrusted["endpoints"][0]["error"].startswith(f"TLS certificate rejected for {name}.{bind_server.zone}")
    assert untrusted["endpoints"][0]["error"].endswith("(not retried)")


def test_https_by_address_fails_hostname_check_unless_validation_is_off(https_server):
    url = https_server.url("/healthz")
    strict = check({"ca_path": https_server.ca_file, "deadline": 10, "endpoints": [{"name": "ip", "url": url}]})
    assert strict.failed
    assert strict["endpoints"][0]["attempts"] == 1
    assert "TLS certificate rejected for 127.0.0.1" in strict["endpoints"][0]["error"]
    relaxed = check({"validate_certs": False, "endpoints": [{"name": "ip", "url": url}]})
    assert not relaxed.failed, relaxed["msg"]


def test_missing_ca_file_is_bad_input(http_server):
    result = check({"ca_path": "/nonexistent/ca.pem", "endpoints": [{"name": "x", "url": http_server.url("/")}]})
    assert result.failed
    assert "x: ca_path /nonexistent/ca.pem is not a readable file" in result["msg"]
