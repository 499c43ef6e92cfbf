"""The services' write lease on Kubernetes: k8s_workloads turns it on by default and hands the pods
the fencing record, its DNS server, port and lease; bad or missing settings stop the role first.

The lease (services/cloudphoenix_services/core/fencing.py) is what fences a region the failover
runbook cannot reach on RDS/Kubernetes, so a pod without it must not be rendered by accident.
"""

from __future__ import annotations

import pytest

from tests.k8s.conftest import K8S_VERSIONS, by_kind, render
from tests.k8s.test_render import SERVICES, _errors

FENCING = {
    "k8s_workloads_fencing_record": "_active.dr.example.org",
    "k8s_workloads_fencing_dns_server": "198.51.100.7",
    "k8s_workloads_fencing_dns_port": 5353,
    "k8s_workloads_fencing_lease_seconds": 7,
}


def container_env(objects, name: str) -> dict[str, str]:
    """What the service's container sees: its envFrom ConfigMaps, then its own env (which wins)."""
    configmaps = by_kind(objects, "ConfigMap")
    (container,) = by_kind(objects, "Deployment")[name]["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    env.update({item["name"]: item["value"] for item in container.get("env", [])})
    return env


def flat(text: str) -> str:
    """Output with the callback's line folding undone."""
    return " ".join(text.split())


def settings_of(objects, name: str, tmp_path):
    """The real services' settings loader on what the container gets."""
    from cloudphoenix_services.core.config import load_settings

    password = tmp_path / "password"
    password.write_text("not-a-real-password\n")
    env = container_env(objects, name)
    env["CLOUDPHOENIX_DB_PASSWORD_FILE"] = str(password)
    return load_settings(env["CLOUDPHOENIX_SERVICE"], env, needs_bucket=(name == "service-b"))


def test_every_container_carries_the_lease_as_set(render_with, tmp_path):
    run, objects = render_with(FENCING)
    assert run.rc == 0, run.stdout[-3000:]
    for name in SERVICES:
        env = container_env(objects, name)
        assert env["CLOUDPHOENIX_FENCING_ENABLED"] == "true"
        assert env["CLOUDPHOENIX_FENCING_RECORD"] == "_active.dr.example.org"
        assert env["CLOUDPHOENIX_FENCING_DNS_SERVER"] == "198.51.100.7"
        assert env["CLOUDPHOENIX_FENCING_DNS_PORT"] == "5353"
        assert env["CLOUDPHOENIX_FENCING_LEASE_SECONDS"] == "7"
        assert env["CLOUDPHOENIX_REGION"] == "east", "the lease compares the record with this region"
        settings = settings_of(objects, name, tmp_path)
        assert settings.fencing_enabled is True
        assert (settings.fencing_record, settings.fencing_dns_server) == ("_active.dr.example.org", "198.51.100.7")
        assert (settings.fencing_dns_port, settings.fencing_lease_seconds) == (5353, 7.0)
        assert settings.region == "east"
    for version in K8S_VERSIONS:
        assert [e for _path, doc in objects for e in _errors(doc, version)] == []


def test_the_lease_is_on_in_the_production_render(rendered, tmp_path):
    """The shared fixture sets only the DNS server: everything else is the role's defaults."""
    _directory, objects = rendered
    for name in SERVICES:
        env = container_env(objects, name)
        assert env["CLOUDPHOENIX_FENCING_ENABLED"] == "true"
        assert env["CLOUDPHOENIX_FENCING_DNS_PORT"] == "53"
        assert env["CLOUDPHOENIX_FENCING_LEASE_SECONDS"] == "10", "failover_old_region_lease_seconds' default"
        assert settings_of(objects, name, tmp_path).fencing_enabled is True


def test_the_record_follows_the_inventory_fencing_record(render_with):
    run, objects = render_with({"cloudphoenix_dns_fencing_record": "_active.phoenix.example.com"})
    assert run.rc == 0, run.stdout[-3000:]
    assert container_env(objects, "service-a")["CLOUDPHOENIX_FENCING_RECORD"] == "_active.phoenix.example.com"
    run, objects = render_with({"cloudphoenix_dns_fencing_record": "_active.phoenix.example.com",
                                "k8s_workloads_fencing_record": "_lease.other.example.com"})
    assert run.rc == 0, run.stdout[-3000:]
    assert container_env(objects, "service-a")["CLOUDPHOENIX_FENCING_RECORD"] == "_lease.other.example.com"


def test_a_changed_lease_setting_rolls_the_pods(rendered, render_with):
    _directory, before = rendered
    run, after = render_with({"k8s_workloads_fencing_dns_server": "198.51.100.8"})
    assert run.rc == 0, run.stdout[-3000:]
    for name in SERVICES:
        old = by_kind(before, "Deployment")[name]["spec"]["template"]["metadata"]["annotations"]
        new = by_kind(after, "Deployment")[name]["spec"]["template"]["metadata"]["annotations"]
        assert old["cloudphoenix.io/config-hash"] != new["cloudphoenix.io/config-hash"]


def test_explicitly_off_for_a_single_region(render_with, tmp_path):
    run, objects = render_with({"k8s_workloads_fencing_enabled": False, "k8s_workloads_fencing_dns_server": ""})
    assert run.rc == 0, run.stdout[-3000:]
    for name in SERVICES:
        env = container_env(objects, name)
        assert env["CLOUDPHOENIX_FENCING_ENABLED"] == "false"
        assert "CLOUDPHOENIX_FENCING_DNS_SERVER" not in env
        assert settings_of(objects, name, tmp_path).fencing_enabled is False


def test_the_role_default_without_a_dns_server_renders_nothing(tmp_path):
    """No inventory at all: the lease is on and has no server, so the role stops before rendering."""
    from tests.k8s.conftest import RENDER_PLAYBOOK
    from tests.support.ansible import run_playbook

    dest = tmp_path / "out"
    run = run_playbook(RENDER_PLAYBOOK, extra_vars={"k8s_render_dir": str(dest)})
    assert run.rc != 0
    output = flat(run.stdout)
    assert "k8s_workloads: invalid input: k8s_workloads_fencing_dns_server is empty" in output, run.stdout[-3000:]
    assert "k8s_workloads_fencing_enabled: false" in output, "the message says how to turn it off"
    assert not dest.exists()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"k8s_workloads_fencing_dns_server": ""}, "k8s_workloads_fencing_dns_server is empty"),
    ({"k8s_workloads_fencing_dns_server": "   "}, "k8s_workloads_fencing_dns_server is empty"),
    ({"k8s_workloads_fencing_dns_server": "dns.example.com"},
     'k8s_workloads_fencing_dns_server "dns.example.com" is not an IP address'),
    ({"k8s_workloads_fencing_dns_server": "10.0.0.256"}, 'k8s_workloads_fencing_dns_server "10.0.0.256" is not an IP'),
    ({"k8s_workloads_fencing_dns_port": 0}, "k8s_workloads_fencing_dns_port 0 is not between 1 and 65535"),
    ({"k8s_workloads_fencing_dns_port": 70000}, "k8s_workloads_fencing_dns_port 70000 is not between 1 and 65535"),
    ({"k8s_workloads_fencing_dns_port": -53}, "k8s_workloads_fencing_dns_port -53 is not between 1 and 65535"),
    ({"k8s_workloads_fencing_lease_seconds": 0}, "k8s_workloads_fencing_lease_seconds 0 must be greater than 0"),
    ({"k8s_workloads_fencing_lease_seconds": -5}, "k8s_workloads_fencing_lease_seconds -5 must be greater than 0"),
    ({"k8s_workloads_fencing_lease_seconds": 0.1}, "from 0.2 to 3600 (what the services accept)"),
    ({"k8s_workloads_fencing_record": "localhost"}, 'k8s_workloads_fencing_record "localhost" is not a DNS name'),
    ({"k8s_workloads_region": "local"}, 'k8s_workloads_region "local" cannot be fenced'),
], ids=["empty-server", "blank-server", "hostname-server", "bad-ipv4", "port-0", "port-70000", "port-negative",
        "lease-0", "lease-negative", "lease-below-what-services-accept", "record-not-a-name", "region-local"])
def test_bad_lease_settings_stop_the_role_before_rendering(tmp_path, overrides, message):
    dest = tmp_path / "out"
    run = render(dest, extra_vars=overrides)
    assert run.rc != 0
    output = flat(run.stdout)
    assert "k8s_workloads: invalid input:" in output
    assert message in output, run.stdout[-3000:]
    assert not dest.exists(), "something was rendered"


def test_all_lease_problems_are_reported_together(tmp_path):
    dest = tmp_path / "out"
    run = render(dest, extra_vars={"k8s_workloads_fencing_dns_server": "", "k8s_workloads_fencing_dns_port": 0,
                                   "k8s_workloads_fencing_lease_seconds": 0})
    assert run.rc != 0
    output = flat(run.stdout)
    for name in ("k8s_workloads_fencing_dns_server", "k8s_workloads_fencing_dns_port",
                 "k8s_workloads_fencing_lease_seconds"):
        assert name in output
    assert not dest.exists()


@pytest.mark.parametrize("server", ["192.0.2.1", "2001:db8::53"])
def test_ipv4_and_ipv6_servers_are_accepted(render_with, server):
    run, objects = render_with({"k8s_workloads_fencing_dns_server": server})
    assert run.rc == 0, run.stdout[-3000:]
    assert container_env(objects, "service-b")["CLOUDPHOENIX_FENCING_DNS_SERVER"] == server


def test_wrong_types_are_stopped_by_the_argument_spec(tmp_path):
    dest = tmp_path / "out"
    run = render(dest, extra_vars={"k8s_workloads_fencing_lease_seconds": "ten"})
    assert run.rc != 0
    assert "k8s_workloads_fencing_lease_seconds" in flat(run.stdout)
    assert not dest.exists()
