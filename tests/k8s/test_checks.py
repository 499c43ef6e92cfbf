"""The semantic checks behind the k8s_policy_problems / k8s_workload_problems filters (pure logic)."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from ansible_collections.cloudphoenix.stack.plugins.module_utils._k8s import (
    parse_quantity,
    policy_problems,
    workload_problems,
)

ROLES = Path(__file__).resolve().parents[2] / "roles"


def _defaults(role: str) -> dict:
    data = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    prefix = f"{role}_"
    return {key[len(prefix):]: value for key, value in data.items()}


@pytest.fixture
def policies() -> dict:
    return copy.deepcopy(_defaults("k8s_policies"))


@pytest.fixture
def workloads() -> dict:
    return copy.deepcopy(_defaults("k8s_workloads"))


@pytest.mark.parametrize(("text", "value"), [
    ("250m", Decimal("0.25")), ("1", Decimal(1)), (2, Decimal(2)), ("1.5", Decimal("1.5")),
    ("512Mi", Decimal(512 * 2**20)), ("1Gi", Decimal(2**30)), ("1k", Decimal(1000)), ("1e3", Decimal(1000)),
    ("1M", Decimal(10**6)), (".5", Decimal("0.5")), ("+1", Decimal(1)),
])
def test_parse_quantity(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["500x", "", "1 Gi", "Gi", "1GiB", "1.2.3", "--1", "1mi", True, None, "1e"])
def test_parse_quantity_rejects_malformed(text):
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        parse_quantity(text)


def test_defaults_are_valid(policies, workloads):
    assert policy_problems(policies) == []
    assert workload_problems(workloads) == []


def test_both_roles_describe_the_same_services(policies, workloads):
    """One list feeds both roles; their defaults must not drift (quota checks use the policies copy)."""
    keys = ("name", "port", "image", "min_replicas", "max_replicas", "standby_replicas", "requests", "limits", "peers")
    assert [{k: s.get(k) for k in keys} for s in policies["services"]] == \
        [{k: s.get(k) for k in keys} for s in workloads["services"]]


def _set(spec, path, value):
    *parents, last = path
    node = spec
    for key in parents:
        node = node[key]
    node[last] = value


POLICY_CASES = {
    "min-above-max": (("services", 0, "min_replicas"), 7, "min_replicas (7) is greater than max_replicas (6)"),
    "malformed-request": (
        ("services", 0, "requests", "cpu"), "500x", "requests.cpu: '500x' is not a Kubernetes quantity"),
    "malformed-limit": (
        ("services", 1, "limits", "memory"), "1GB!", "limits.memory: '1GB!' is not a Kubernetes quantity"),
    "request-above-limit": (
        ("services", 0, "requests", "memory"), "1Gi", "requests.memory (1Gi) is greater than limits.memory"),
    "pdb-min-blocks": (
        ("services", 0, "pdb_min_available"), 2, "pdb_min_available 2 >= the smallest replica count (2)"),
    "pdb-percent-blocks": (("services", 0, "pdb_min_available"), "100%", "would block every voluntary eviction"),
    "pdb-zero-unavailable": (("services", 0, "pdb_max_unavailable"), 0, "pdb_max_unavailable 0 would block"),
    "pdb-garbage": (("services", 0, "pdb_max_unavailable"), "one", "neither an integer nor a percentage"),
    "quota-cpu": (("quota", "requests.cpu"), "2", "quota.requests.cpu (2) is smaller than the sum of requests.cpu"),
    "quota-memory": (("quota", "limits.memory"), "4Gi", "quota.limits.memory (4Gi) is smaller than the sum"),
    "quota-pods": (("quota", "pods"), 5, "quota.pods (5) is smaller than the 12 pods"),
    "quota-malformed": (
        ("quota", "requests.memory"), "4 GiB", "quota.requests.memory: '4 GiB' is not a Kubernetes quantity"),
    "cidr-octet": (("egress", "database", "cidrs"), ["10.10.20.300/24"], "'10.10.20.300/24' is not a valid CIDR"),
    "cidr-host-bits": (("egress", "object_storage", "cidrs"), ["10.10.30.1/24"], "'10.10.30.1/24' is not a valid CIDR"),
    "cidr-no-prefix": (("egress", "database", "cidrs"), ["10.10.20.5"], "write the prefix length"),
    "cidr-everywhere": (("egress", "object_storage", "cidrs"), ["0.0.0.0/0"], "would allow egress everywhere"),
    "no-db-cidr": (("egress", "database", "cidrs"), [], "egress.database.cidrs: at least one CIDR"),
    "bad-port": (("egress", "database", "ports"), [{"port": 70000, "protocol": "TCP"}], "port 70000 is not between"),
    "bad-protocol": (("egress", "dns", "ports"), [{"port": 53, "protocol": "ICMP"}], "protocol 'ICMP'"),
    "unknown-peer": (("services", 0, "peers"), ["service-c"], "peer 'service-c' is not one of the services"),
    "bad-name": (("services", 0, "name"), "Service_A", "name must be a DNS-1035 label"),
    "bad-namespace": (("namespace",), "Prod", "namespace 'Prod' is not a DNS-1123 label"),
    "bad-psa-version": (("psa_version",), "1.31", "psa_version '1.31' must be 'latest'"),
    "limit-above-range": (
        ("limit_range", "max", "memory"), "256Mi", "limits.memory (512Mi) is above limit_range.max.memory"),
    "range-defaults": (
        ("limit_range", "default_request", "cpu"), "1", "default_request.cpu is greater than default.cpu"),
    "bad-monitoring-namespace": (("monitoring_namespace",), "Mon", "monitoring_namespace 'Mon' is not a DNS-1123"),
    "standby-zero": (("services", 1, "standby_replicas"), 0, "standby_replicas (0) must be at least 1"),
}


@pytest.mark.parametrize("case", sorted(POLICY_CASES))
def test_policy_problem_is_reported_clearly(policies, case):
    path, value, message = POLICY_CASES[case]
    _set(policies, path, value)
    if case.startswith("pdb-min") or case == "pdb-percent-blocks":
        policies["services"][0].pop("pdb_max_unavailable")
    problems = policy_problems(policies)
    assert any(message in problem for problem in problems), problems


def test_pdb_is_checked_against_the_standby_replica_count(policies):
    policies["services"][0].pop("pdb_max_unavailable")
    policies["services"][0]["pdb_min_available"] = 1
    assert policy_problems(policies) == [], "2 active replicas, 1 may go"
    policies["region_role"] = "standby"
    assert any("smallest replica count (1)" in p for p in policy_problems(policies))


def test_all_problems_are_reported_at_once(policies):
    policies["services"][0]["min_replicas"] = 9
    policies["services"][1]["requests"]["cpu"] = "500x"
    policies["egress"]["database"]["cidrs"] = ["10.0.0.0/33"]
    assert len(policy_problems(policies)) == 3


WORKLOAD_CASES = {
    "no-tag": (("services", 0, "image"), "ghcr.io/cloudphoenix/service-a", "has neither a tag nor a digest"),
    "latest": (("services", 0, "image"), "ghcr.io/cloudphoenix/service-a:latest", "mutable 'latest' tag"),
    "bad-digest": (("services", 0, "image"), "repo/a@sha256:abc", "malformed digest"),
    "grace-too-short": (
        ("termination_grace_period_seconds",), 20, "shorter than prestop_sleep_seconds (5) + graceful_timeout (20)"),
    "no-prestop": (("prestop_sleep_seconds",), 0, "prestop_sleep_seconds (0) must be at least 1"),
    "probe-path": (("readiness_path",), "readyz", "readiness_path 'readyz' must be an absolute HTTP path"),
    "env-name": (("services", 0, "config"), {"1BAD": "x"}, "config key '1BAD' is not a valid environment variable"),
    "region": (("region",), "East", "region 'East' must be a short lower-case name"),
    "db-hosts": (("database_hosts",), [], "at least one PostgreSQL host"),
    "db-host": (("database_hosts",), ["db east"], "'db east' is not a host name"),
    "quantity": (("services", 1, "requests", "memory"), "256MB", "'256MB' is not a Kubernetes quantity"),
    "min-above-max": (("services", 1, "min_replicas"), 5, "min_replicas (5) is greater than max_replicas (4)"),
}


def test_digest_can_be_required(workloads):
    assert workload_problems(workloads) == [], "tags are fine by default"
    workloads["require_image_digest"] = True
    problems = workload_problems(workloads)
    assert len(problems) == 2 and all("is not pinned by digest" in p for p in problems)
    for service in workloads["services"]:
        service["image"] += "@sha256:" + "a" * 64
    assert workload_problems(workloads) == []


@pytest.mark.parametrize("case", sorted(WORKLOAD_CASES))
def test_workload_problem_is_reported_clearly(workloads, case):
    path, value, message = WORKLOAD_CASES[case]
    _set(workloads, path, value)
    problems = workload_problems(workloads)
    assert any(message in problem for problem in problems), problems
