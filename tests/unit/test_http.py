"""service_check's pure logic: input validation, JSON paths, expectations, retries (fake clock)."""

from __future__ import annotations

import pytest
from ansible_collections.cloudphoenix.stack.plugins.module_utils import _http
from ansible_collections.cloudphoenix.stack.plugins.module_utils._http import (
    AttemptFailed,
    CheckSpecError,
    build_spec,
    build_specs,
    check_endpoint,
    evaluate_response,
    lookup_json,
    parse_json_path,
    summary_message,
)

SECRET = "Bearer unit-test-secret-31c9"


def spec(**raw):
    raw.setdefault("url", "http://127.0.0.1:8080/readyz")
    return build_specs([raw])[0]


# ---------------------------------------------------------------- JSON paths

def test_parse_json_path_splits_keys_and_indexes():
    assert parse_json_path("checks.database.writable") == ["checks", "database", "writable"]
    assert parse_json_path("items.0.sku") == ["items", 0, "sku"]


@pytest.mark.parametrize("path", ["", "  ", "a..b", ".a", "a."])
def test_parse_json_path_refuses_empty_parts(path):
    with pytest.raises(ValueError, match="JSON path"):
        parse_json_path(path)


def test_lookup_json_walks_dicts_and_lists():
    doc = {"a": {"b": [{"c": 1}, {"c": False}]}, "0": "key zero"}
    assert lookup_json(doc, "a.b.1.c") is False
    assert lookup_json(doc, "0") == "key zero"  # digits are dict keys in a dict
    assert lookup_json(doc, "a.b.2.c") is _http._MISSING
    assert lookup_json(doc, "a.x") is _http._MISSING
    assert lookup_json(doc, "a.b.c") is _http._MISSING  # a key into a list
    assert lookup_json([1, 2], "1") == 2


# ---------------------------------------------------------------- expectations

def test_evaluate_response_accepts_a_matching_answer():
    s = spec(expect_status=[200, 204], expect_body_regex=r'"status":\s*"ok"',
             expect_json={"status": "ok", "checks.db": True, "n": 2, "ratio": 0.5, "tags": ["a"]})
    body = b'{"status": "ok", "checks": {"db": true}, "n": 2.0, "ratio": 0.5, "tags": ["a"]}'
    problems, document = evaluate_response(s, 204, body)
    assert problems == []
    assert document["checks"] == {"db": True}


def test_evaluate_response_lists_every_problem():
    s = spec(expect_body_regex="ready", expect_json={"checks.db": True, "n": 1, "gone": None})
    problems = evaluate_response(s, 503, b'{"checks": {"db": 1}, "n": true}')[0]
    assert problems == [
        'status 503, expected 200 (body: {"checks": {"db": 1}, "n": true})',
        "body does not match 'ready'",
        "JSON field checks.db is 1, expected true",
        "JSON field n is true, expected 1",
        "JSON field gone missing (expected null)",
    ]


def test_evaluate_response_status_list_message():
    problems = evaluate_response(spec(expect_status=[200, 201]), 500, b"")[0]
    assert problems == ["status 500, expected one of 200, 201"]


def test_evaluate_response_non_json_body():
    problems, document = evaluate_response(spec(expect_json={"a": 1}), 200, b"<html>")
    assert problems == ["body is not JSON"]
    assert document is None


def test_evaluate_response_capture_needs_the_field():
    problems = evaluate_response(spec(capture=["id"], expect_status=[201]), 201, b'{"number": 4}')[0]
    assert problems == ["JSON field id to capture is missing"]


def test_json_equal_does_not_confuse_bool_and_number():
    assert not _http._json_equal(1, True)
    assert not _http._json_equal(True, 1)
    assert _http._json_equal(0, 0.0)
    assert _http._json_equal({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]})
    assert not _http._json_equal({"a": 1}, {"a": 1, "b": 2})
    assert not _http._json_equal("1", 1)


# ---------------------------------------------------------------- input

def test_build_spec_normalises_url_and_headers():
    s = spec(url="http://api.phoenix.test:8080/orders?limit=1", method="post",
             headers={"authorization": SECRET, "Content-Type": "text/plain"}, json_body={"a": 1})
    assert (s["scheme"], s["host"], s["port"], s["target"]) == ("http", "api.phoenix.test", 8080, "/orders?limit=1")
    assert s["method"] == "POST"
    assert s["headers"]["Host"] == "api.phoenix.test:8080"
    assert s["headers"]["Content-Type"] == "text/plain"  # the caller's content type wins
    assert s["payload"] == b'{"a": 1}'
    assert s["name"] == "http://api.phoenix.test:8080/orders?limit=1"


def test_build_spec_default_ports_and_ipv6_host_header():
    assert spec(url="https://docs.phoenix.test/x")["headers"]["Host"] == "docs.phoenix.test"
    assert spec(url="https://docs.phoenix.test/x")["port"] == 443
    assert spec(url="http://[::1]:8081/")["headers"]["Host"] == "[::1]:8081"
    assert spec(url="http://127.0.0.1")["target"] == "/"


def test_endpoint_values_override_module_defaults():
    defaults = {"timeout": 2.0, "deadline": 9.0, "dns_server": "127.0.0.1", "dns_port": 5353,
                "headers": {"Authorization": SECRET, "X-Trace": "module"}, "expect_status": [200, 204]}
    s, problems = build_spec({"url": "http://api.phoenix.test/", "timeout": 0.5,
                              "headers": {"x-trace": "endpoint"}}, defaults)
    assert problems == []
    assert (s["timeout"], s["deadline"], s["dns_server"], s["dns_port"]) == (0.5, 9.0, "127.0.0.1", 5353)
    assert s["expect_status"] == [200, 204]
    assert s["headers"]["Authorization"] == SECRET
    assert s["headers"]["x-trace"] == "endpoint"
    assert "X-Trace" not in s["headers"]  # case-insensitive override, not a duplicate


def test_build_specs_collects_every_problem_at_once():
    with pytest.raises(CheckSpecError) as caught:
        build_specs([
            {"name": "a", "url": "ftp://x/"},
            {"name": "b", "url": "http://x/", "expect_status": [42], "timeout": -1, "max_attempts": 0},
            {"name": "c", "url": "http://x/", "expect_body_regex": "("},
            {"name": "c", "url": "http://y/"},
            "not a mapping",
        ])
    problems = caught.value.problems
    assert "a: url scheme must be http or https, not 'ftp'" in problems
    assert "b: expect_status 42 is not an HTTP status (100-599)" in problems
    assert "b: timeout must be greater than 0 (got -1.0)" in problems
    assert "b: max_attempts must be at least 1" in problems
    assert any(p.startswith("c: expect_body_regex '(' does not compile") for p in problems)
    assert "c: endpoint names must be unique (give each a name)" in problems
    assert "endpoint #5 is not a mapping" in problems


def test_build_specs_needs_endpoints():
    with pytest.raises(CheckSpecError, match="at least one endpoint"):
        build_specs([])


@pytest.mark.parametrize("headers", [
    {"Authorization": SECRET + "\r\nX-Evil: 1"},
    {"Authorization": SECRET + "\n"},
    {"Bad Name": SECRET},
])
def test_bad_headers_are_refused_without_quoting_the_value(headers):
    with pytest.raises(CheckSpecError) as caught:
        build_specs([{"name": "e", "url": "http://x/", "headers": headers}])
    assert SECRET not in str(caught.value)
    assert "header" in str(caught.value)


def test_dns_server_without_dnspython_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_http, "HAS_DNSPYTHON", False)
    with pytest.raises(CheckSpecError, match="dns_server needs the Python library dnspython"):
        build_specs([{"url": "http://api.phoenix.test/", "dns_server": "127.0.0.1"}])
    # An IP-literal host needs no resolution, so no dnspython either.
    assert build_specs([{"url": "http://127.0.0.1/", "dns_server": "127.0.0.1"}])


# ---------------------------------------------------------------- retries (fake clock, fake attempt)

class FakeClock:
    """Time only moves when the code under test sleeps or an attempt 'takes' time."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def fake_attempts(monkeypatch, clock, outcomes, cost=0.1):
    """Replace the network attempt: each call takes `cost` seconds and plays the next outcome."""
    timeouts = []

    def attempt(spec, timeout, state):
        state["attempts"] += 1
        timeouts.append(timeout)
        clock.now += cost
        outcome = outcomes.pop(0) if outcomes else outcomes_last[0]
        state["status"] = getattr(outcome, "status", 200)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    outcomes_last = [outcomes[-1]]
    monkeypatch.setattr(_http, "attempt", attempt)
    return timeouts


def test_check_endpoint_retries_transient_failures_then_succeeds(monkeypatch):
    clock = FakeClock()
    fake_attempts(monkeypatch, clock, [AttemptFailed("status 503, expected 200", status=503),
                                       AttemptFailed("connection refused (x:1)"), {"id": 7}])
    result = check_endpoint(spec(capture=["id"]), clock=clock, sleep=clock.sleep)
    assert result["ok"] is True
    assert result["attempts"] == 3
    assert result["error"] is None
    assert result["captured"] == {"id": 7}
    assert len(clock.sleeps) == 2


def test_check_endpoint_stops_at_the_deadline_and_names_the_last_error(monkeypatch):
    clock = FakeClock()
    timeouts = fake_attempts(monkeypatch, clock, [AttemptFailed("connection refused (x:1)")], cost=0.4)
    result = check_endpoint(spec(deadline=3, timeout=1), backoff_base=0.2, backoff_max=0.5,
                            clock=clock, sleep=clock.sleep)
    assert result["ok"] is False
    assert result["error"].startswith(f"connection refused (x:1) (gave up after {result['attempts']} attempts in")
    assert result["attempts"] > 2
    assert clock.now <= 3 + 1  # the last attempt may start before and end after the deadline, by its timeout
    assert all(0 < t <= 1 for t in timeouts)


def test_attempt_timeout_shrinks_to_the_remaining_deadline(monkeypatch):
    clock = FakeClock()
    timeouts = fake_attempts(monkeypatch, clock, [AttemptFailed("timed out")], cost=1.0)
    check_endpoint(spec(deadline=2, timeout=1.5, max_attempts=3), backoff_base=0, backoff_max=0,
                   clock=clock, sleep=clock.sleep)
    assert timeouts[0] == 1.5
    assert timeouts[1] == pytest.approx(1.0)
    assert timeouts[2] == pytest.approx(_http.MIN_ATTEMPT_TIMEOUT)  # never zero or negative


def test_max_attempts_bounds_the_retries(monkeypatch):
    clock = FakeClock()
    fake_attempts(monkeypatch, clock, [AttemptFailed("status 500, expected 200", status=500)])
    result = check_endpoint(spec(max_attempts=2), clock=clock, sleep=clock.sleep)
    assert result["attempts"] == 2
    assert result["status"] == 500
    assert "gave up after 2 attempts" in result["error"]


def test_non_transient_failure_is_not_retried(monkeypatch):
    clock = FakeClock()
    fake_attempts(monkeypatch, clock, [AttemptFailed("TLS certificate rejected for x", transient=False)])
    result = check_endpoint(spec(), clock=clock, sleep=clock.sleep)
    assert result["attempts"] == 1
    assert result["error"] == "TLS certificate rejected for x (not retried)"


def test_unexpected_exception_becomes_that_endpoints_error(monkeypatch):
    clock = FakeClock()
    fake_attempts(monkeypatch, clock, [RuntimeError("boom")])
    result = check_endpoint(spec(), clock=clock, sleep=clock.sleep)
    assert result["ok"] is False
    assert result["error"] == "unexpected RuntimeError: boom"


def test_check_mode_skips_writes_but_not_reads(monkeypatch):
    clock = FakeClock()
    fake_attempts(monkeypatch, clock, [{"ok": True}])
    write = check_endpoint(spec(method="POST"), check_mode=True, clock=clock, sleep=clock.sleep)
    assert (write["ok"], write["skipped"], write["attempts"]) == (True, True, 0)
    read = check_endpoint(spec(), check_mode=True, clock=clock, sleep=clock.sleep)
    assert (read["ok"], read["skipped"], read["attempts"]) == (True, False, 1)


def test_summary_message_names_every_failing_endpoint():
    results = [
        {"name": "a", "ok": True, "error": None},
        {"name": "b", "ok": False, "error": "status 503, expected 200 (gave up after 3 attempts in 1.0s)"},
        {"name": "c", "ok": False, "error": "connection refused (x:1) (gave up after 9 attempts in 5.0s)"},
    ]
    assert summary_message(results) == (
        "2 of 3 endpoints failed: b: status 503, expected 200 (gave up after 3 attempts in 1.0s); "
        "c: connection refused (x:1) (gave up after 9 attempts in 5.0s)")
    assert summary_message(results[:1]) == "all 1 endpoints passed"


def test_expect_address_is_normalised_and_validated():
    assert spec(expect_address="127.0.20.1")["expect_address"] == ["127.0.20.1"]
    assert spec(expect_address=["::0001"])["expect_address"] == ["::1"]
    with pytest.raises(CheckSpecError, match="expect_address 'west' is not an IP address"):
        build_specs([{"url": "http://x/", "expect_address": ["west"]}])


def test_status_problem_quotes_a_short_body_excerpt():
    problems = evaluate_response(spec(), 503, b"x" * 500)[0]
    assert problems == ["status 503, expected 200 (body: " + "x" * 157 + "...)"]
    problems = evaluate_response(spec(), 503, b"  not\n  ready ")[0]
    assert problems == ["status 503, expected 200 (body: not ready)"]
