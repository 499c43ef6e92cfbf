"""Role verify / playbooks/verify.yml against a real gunicorn, through a real BIND9 (no mocks)."""

from __future__ import annotations

import json
import sys
import urllib.request
import uuid
from pathlib import Path

import dns.query
import dns.tsigkeyring
import dns.update
import pytest

from tests.support.ansible import REPO_ROOT, run_playbook
from tests.support.net import free_port

PLAYBOOK = REPO_ROOT / "playbooks" / "verify.yml"


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own test server
        return json.loads(response.read())


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text(
        "all:\n  children:\n    control:\n      hosts:\n        controller:\n"
        f"          ansible_connection: local\n          ansible_python_interpreter: {sys.executable}\n"
    )
    return path


@pytest.fixture
def public(bind_server, http_server):
    """Public names for both services in the test BIND, pointing at the test gunicorn."""
    tag = uuid.uuid4().hex[:8]
    names = {"service_a": f"api-{tag}", "service_b": f"docs-{tag}"}
    keyring = dns.tsigkeyring.from_text({bind_server.key_name: bind_server.secret})
    update = dns.update.UpdateMessage(bind_server.zone, keyring=keyring, keyalgorithm=dns.tsig.HMAC_SHA256)
    for name in names.values():
        update.replace(name, 5, "A", "127.0.0.1")
    assert dns.query.tcp(update, bind_server.host, port=bind_server.port, timeout=5).rcode() == 0
    return {
        "verify_zone": bind_server.zone,
        "verify_dns_server": bind_server.host,
        "verify_dns_port": bind_server.port,
        "verify_deadline": 5,
        "verify_services": {svc: {"port": http_server.port, "public_name": name} for svc, name in names.items()},
    }


def _orders(http_server) -> int:
    return _get_json(http_server.url("/orders-count"))


def test_public_names_health_and_write_then_read(inventory, public, http_server):
    before = _orders(http_server)
    run = run_playbook(PLAYBOOK, inventory=inventory, extra_vars=public)
    assert run.rc == 0, run.stdout + run.stderr
    assert run.total("failed") == 0
    assert run.total("changed") == 0
    assert _orders(http_server) == before + 1
    order = _get_json(http_server.url(f"/orders/{before + 1}"))
    assert order["customer_id"] == "cloudphoenix-verify"
    assert order["idempotency_key"].startswith("cloudphoenix-verify-")
    assert order["content_type"] == "application/json"


def test_region_address_without_dns(inventory, http_server):
    port = http_server.port
    extra = {"verify_target": "region", "verify_region": "lab", "verify_region_addresses": {"lab": "127.0.0.1"},
             "verify_dns_server": "127.0.0.1", "verify_dns_port": free_port(),  # no DNS there: must not be used
             "verify_deadline": 5, "verify_write_read": False,
             "verify_services": {"service_a": {"port": port, "public_name": "api"},
                                 "service_b": {"port": port, "public_name": "docs"}}}
    before = _orders(http_server)
    run = run_playbook(PLAYBOOK, "-v", inventory=inventory, extra_vars=extra)
    assert run.rc == 0, run.stdout + run.stderr
    assert "all 4 endpoints passed" in run.stdout
    assert f"http://127.0.0.1:{port}/readyz" in run.stdout
    report = run.stdout[run.stdout.index("Summarise the verification"):]
    assert "verify_report:" in report
    assert "all_ok: true" in report
    assert "target: region" in report
    assert _orders(http_server) == before  # write_read disabled


def test_not_deployed_is_skipped_with_a_clear_message(inventory, http_server):
    closed = free_port()  # nothing listens: any request would fail the play
    extra = {"verify_services_deployed": False, "verify_dns_port": free_port(),
             "verify_services": {"service_a": {"port": closed, "public_name": "api"}}}
    before = _orders(http_server)
    run = run_playbook(PLAYBOOK, inventory=inventory, extra_vars=extra)
    assert run.rc == 0, run.stdout + run.stderr
    assert "the services are not deployed (verify_services_deployed=false)" in run.stdout
    assert run.total("failed") == 0
    assert _orders(http_server) == before


def test_a_down_service_fails_the_play_naming_it(inventory, public, http_server):
    closed = free_port()
    public["verify_services"]["service_b"]["port"] = closed
    public["verify_deadline"] = 1
    before = _orders(http_server)
    run = run_playbook(PLAYBOOK, inventory=inventory, extra_vars=public)
    assert run.rc != 0
    assert f"2 of 4 endpoints failed: service_b /healthz: connection refused (127.0.0.1:{closed})" in run.stdout
    assert "service_b /readyz: connection refused" in run.stdout
    assert _orders(http_server) == before  # stopped before the write


def test_check_mode_checks_health_but_writes_nothing(inventory, public, http_server):
    before = _orders(http_server)
    run = run_playbook(PLAYBOOK, "--check", "-v", inventory=inventory, extra_vars=public)
    assert run.rc == 0, run.stdout + run.stderr
    assert "all 4 endpoints passed" in run.stdout  # health was really checked
    assert "not sent in check mode: POST is not a read-only method" in run.stdout
    assert run.total("changed") == 0
    assert _orders(http_server) == before


def test_bad_target_is_refused_by_the_argument_spec(inventory, public, http_server):
    before = _orders(http_server)
    run = run_playbook(PLAYBOOK, inventory=inventory, extra_vars={**public, "verify_target": "everywhere"})
    assert run.rc != 0
    assert "verify_target" in run.stdout
    assert _orders(http_server) == before


def test_headers_never_reach_the_playbook_output(inventory, public, http_server):
    token = http_server.token
    extra = {**public, "verify_headers": {"Authorization": token}, "verify_write_read": False}
    run = run_playbook(PLAYBOOK, "-vvv", inventory=inventory, extra_vars=extra)
    assert run.rc == 0, run.stdout + run.stderr
    assert "all 4 endpoints passed" in run.stdout
    assert token not in run.stdout + run.stderr


def test_expect_region_refuses_names_that_resolve_elsewhere(inventory, public, http_server):
    """The public names resolve to 127.0.0.1 (region "here"); expecting region "dr" fails before any write."""
    before = _orders(http_server)
    extra = {**public, "verify_deadline": 1, "verify_expect_region": "dr",
             "verify_region_addresses": {"here": "127.0.0.1", "dr": "127.0.0.3"}}
    run = run_playbook(PLAYBOOK, inventory=inventory, extra_vars=extra)
    assert run.rc != 0
    assert "resolved to 127.0.0.1, expected 127.0.0.3 (request not sent)" in run.stdout
    assert _orders(http_server) == before

    ok = run_playbook(PLAYBOOK, inventory=inventory, extra_vars={**extra, "verify_expect_region": "here"})
    assert ok.rc == 0, ok.stdout + ok.stderr
    assert _orders(http_server) == before + 1
