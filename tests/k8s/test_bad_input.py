"""Bad input stops the roles with a clear message before any manifest is written or any API call.

No Kubernetes API server can run here, so apply mode points kubernetes.core at a MOCK: a local
HTTP server that only records requests (and answers 404). The positive control proves that a
valid run does reach it, so "zero requests" on bad input means the role stopped before the API.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.k8s.conftest import PRODUCTION_VARS
from tests.support.ansible import REPO_ROOT, run_playbook

APPLY = REPO_ROOT / "playbooks" / "k8s_apply.yml"
RENDER = REPO_ROOT / "playbooks" / "k8s_render.yml"


class _Recorder(BaseHTTPRequestHandler):
    requests: list[str]

    def _answer(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
        body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_api(tmp_path: Path) -> Iterator[tuple[dict[str, str], list[str]]]:
    """MOCK Kubernetes API endpoint recording every request; yields (env for ansible, requests)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {
        "K8S_AUTH_HOST": f"http://127.0.0.1:{server.server_port}",
        "K8S_AUTH_API_KEY": "test-token",
        "K8S_AUTH_VERIFY_SSL": "false",
        "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
    }
    yield env, server.requests  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def _service(index: int, **changes) -> list[dict]:
    """The production services with one changed; PRODUCTION_VARS feeds this list to both roles."""
    import yaml

    services = yaml.safe_load(PRODUCTION_VARS.read_text())["k8s_workloads_services"]
    services[index].update(changes)
    return services


def _vars(overrides: dict) -> list[str]:
    """PRODUCTION_VARS, then the overrides (a later -e wins)."""
    return ["-e", f"@{PRODUCTION_VARS}", "-e", json.dumps(overrides)]


CASES = {
    "min-above-max": ({"k8s_workloads_services": _service(0, min_replicas=8)},
                      "service service-a: min_replicas (8) is greater than max_replicas (6)"),
    "malformed-quantity": ({"k8s_workloads_services": _service(0, requests={"cpu": "500x", "memory": "256Mi"})},
                           "service service-a: requests.cpu: '500x' is not a Kubernetes quantity"),
    "pdb-blocks-evictions": ({"k8s_workloads_services": _service(1, pdb_max_unavailable=None, pdb_min_available=2)},
                             "pdb_min_available 2 >= the smallest replica count (2) "
                             "would block every voluntary eviction"),
    "quota-too-small": ({"k8s_policies_quota": {"pods": 20, "requests.cpu": "1", "requests.memory": "4Gi"}},
                        "quota.requests.cpu (1) is smaller than the sum of requests.cpu over all services"),
    "malformed-cidr": ({"k8s_policies_egress": {
        "dns": {"cidrs": [], "ports": [{"port": 53, "protocol": "UDP"}]},
        "database": {"cidrs": ["10.10.20.0/33"], "ports": [{"port": 5432, "protocol": "TCP"}]},
        "object_storage": {"cidrs": ["10.10.30.0/24"], "ports": [{"port": 443, "protocol": "TCP"}]}}},
        "egress.database.cidrs: '10.10.20.0/33' is not a valid CIDR"),
    "image-without-digest": ({"k8s_workloads_services": _service(0, image="ghcr.io/cloudphoenix/service-a:1.0.0")},
                             "image 'ghcr.io/cloudphoenix/service-a:1.0.0' is not pinned by digest"),
    "grace-shorter-than-drain": ({"k8s_workloads_termination_grace_period_seconds": 10},
                                 "termination_grace_period_seconds (10) is shorter than prestop_sleep_seconds (5) + "
                                 "graceful_timeout (20)"),
    # the write lease (on by default): its DNS server is required, and what the services accept
    "fencing-without-dns-server": ({"k8s_workloads_fencing_dns_server": ""},
                                   "k8s_workloads_fencing_dns_server is empty: with k8s_workloads_fencing_enabled"),
    "fencing-dns-server-not-an-ip": ({"k8s_workloads_fencing_dns_server": "ns-1.awsdns-01.com"},
                                     'k8s_workloads_fencing_dns_server "ns-1.awsdns-01.com" is not an IP address'),
    "fencing-port-out-of-range": ({"k8s_workloads_fencing_dns_port": 65536},
                                  "k8s_workloads_fencing_dns_port 65536 is not between 1 and 65535"),
    "fencing-lease-zero": ({"k8s_workloads_fencing_lease_seconds": 0},
                           "k8s_workloads_fencing_lease_seconds 0 must be greater than 0"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_before_any_api_call(fake_api, case):
    env, requests = fake_api
    extra_vars, message = CASES[case]
    run = run_playbook(APPLY, *_vars(extra_vars), env=env)
    assert run.rc != 0
    assert message in run.stdout, run.stdout[-3000:]
    assert "invalid input" in run.stdout
    assert "Apply the objects with kubernetes.core.k8s" not in run.stdout
    assert requests == [], "the role talked to the API before rejecting its input"


def test_bad_input_renders_nothing(tmp_path):
    dest = tmp_path / "out"
    run = run_playbook(RENDER, *_vars({"k8s_render_dir": str(dest),
                                       "k8s_workloads_services": _service(0, min_replicas=8)}))
    assert run.rc != 0
    assert "min_replicas (8) is greater than max_replicas (6)" in run.stdout
    assert not dest.exists()


def test_wrong_types_are_stopped_by_the_argument_spec(tmp_path):
    dest = tmp_path / "out"
    run = run_playbook(RENDER, extra_vars={"k8s_render_dir": str(dest), "k8s_policies_region_role": "primary"})
    assert run.rc != 0
    assert "k8s_policies_region_role" in run.stdout and "active, standby" in run.stdout, run.stdout[-2000:]
    assert not dest.exists()


def test_valid_input_does_reach_the_api(fake_api):
    """Positive control for the tests above: the mock sees a valid run's requests."""
    env, requests = fake_api
    run = run_playbook(APPLY, "-e", f"@{PRODUCTION_VARS}", env=env)
    assert run.rc != 0, "the mock answers 404 to everything"
    assert "Apply the objects with kubernetes.core.k8s" in run.stdout
    assert requests, "kubernetes.core did not contact the mock API"
