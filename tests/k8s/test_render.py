"""Rendered manifests: strict schema validation on the oldest and newest supported Kubernetes,
and the behaviour each object must have (network isolation, autoscaling, drain, standby, repoint).

Everything runs on files the real roles write in render mode; no API server is involved.
"""

from __future__ import annotations

import copy
import hashlib
import json

import kubernetes_validate
import pytest
import yaml

from tests.k8s.conftest import K8S_VERSIONS, by_kind

SERVICES = ("service-a", "service-b")
EXPECTED = {
    "Namespace": 1, "ResourceQuota": 1, "LimitRange": 1, "NetworkPolicy": 2 + 2 * len(SERVICES),
    "PodDisruptionBudget": len(SERVICES), "HorizontalPodAutoscaler": len(SERVICES),
    "ServiceAccount": len(SERVICES), "ConfigMap": len(SERVICES), "Service": len(SERVICES),
    "Deployment": len(SERVICES),
}


def _errors(doc: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {exc.message} at {list(exc.path)}"]
    except kubernetes_validate.SchemaNotFoundError as exc:  # an API that version does not serve
        return [f"{doc.get('kind')}: no schema in {version}: {exc}"]
    return []


def test_every_expected_object_is_rendered_once(rendered):
    _directory, objects = rendered
    counts: dict[str, int] = {}
    for _path, doc in objects:
        counts[doc["kind"]] = counts.get(doc["kind"], 0) + 1
    assert counts == EXPECTED
    names = [(doc["kind"], doc["metadata"]["name"]) for _path, doc in objects]
    assert len(names) == len(set(names))
    assert names[0] == ("Namespace", "cloudphoenix-prod"), "namespace first: kubectl apply -f DIR works too"
    assert sorted({path.name for path, _doc in objects}) == ["k8s_policies.yaml", "k8s_workloads.yaml"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_strictly(rendered, version):
    _directory, objects = rendered
    errors = [error for _path, doc in objects for error in _errors(doc, version)]
    assert errors == []
    assert len(objects) == sum(EXPECTED.values())


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_strict_validation_catches_mistakes(rendered, version):
    """Negative control: the validator used above does reject what a cluster would reject."""
    _directory, objects = rendered
    deployment = copy.deepcopy(by_kind(objects, "Deployment")["service-a"])
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True  # typo
    assert _errors(deployment, version)
    hpa = copy.deepcopy(by_kind(objects, "HorizontalPodAutoscaler")["service-a"])
    hpa["spec"]["minReplicas"] = "two"
    assert _errors(hpa, version)
    old_api = {"apiVersion": "policy/v1beta1", "kind": "PodSecurityPolicy", "metadata": {"name": "x"}, "spec": {}}
    assert _errors(old_api, version), "PodSecurityPolicy was removed in 1.25"


def test_namespace_enforces_restricted_with_a_pinned_version(rendered):
    _directory, objects = rendered
    (namespace,) = by_kind(objects, "Namespace").values()
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "v1.31"
    namespaced = [doc for _path, doc in objects if doc["kind"] != "Namespace"]
    assert {doc["metadata"]["namespace"] for doc in namespaced} == {namespace["metadata"]["name"]}


def test_network_policies_deny_by_default_and_allow_only_the_listed_paths(rendered):
    _directory, objects = rendered
    policies = by_kind(objects, "NetworkPolicy")
    deny = policies["default-deny-all"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    dns = policies["allow-dns-egress"]["spec"]
    assert dns["podSelector"] == {} and dns["policyTypes"] == ["Egress"]
    assert {(p["port"], p["protocol"]) for rule in dns["egress"] for p in rule["ports"]} == {(53, "UDP"), (53, "TCP")}

    ingress_a = policies["service-a-ingress"]["spec"]["ingress"]
    assert len(ingress_a) == 1, "only the ingress controller reaches service-a"
    source = ingress_a[0]["from"][0]
    assert source["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert ingress_a[0]["ports"] == [{"port": 8080, "protocol": "TCP"}]

    ingress_b = policies["service-b-ingress"]["spec"]["ingress"]
    callers = [peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
               for rule in ingress_b[1:] for peer in rule["from"]]
    assert callers == ["service-a"], "service-b accepts service-a (its only caller) besides the ingress"
    assert ingress_b[1]["ports"] == [{"port": 8081, "protocol": "TCP"}]

    egress_a = policies["service-a-egress"]["spec"]["egress"]
    cidrs = sorted(peer["ipBlock"]["cidr"] for rule in egress_a for peer in rule["to"] if "ipBlock" in peer)
    assert cidrs == ["10.10.20.0/24", "10.10.30.0/24", "10.20.20.0/24", "10.20.30.0/24"]
    ports = sorted(p["port"] for rule in egress_a for p in rule["ports"])
    assert ports == [443, 5432, 8081]
    egress_b = policies["service-b-egress"]["spec"]["egress"]
    assert not any("podSelector" in peer for rule in egress_b for peer in rule["to"]), "service-b calls nobody"


def test_pdbs_and_autoscalers_match_the_services(rendered):
    _directory, objects = rendered
    pdbs, hpas = by_kind(objects, "PodDisruptionBudget"), by_kind(objects, "HorizontalPodAutoscaler")
    for name in SERVICES:
        assert pdbs[name]["spec"]["maxUnavailable"] == 1
        assert pdbs[name]["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        assert hpas[name]["apiVersion"] == "autoscaling/v2"
        assert hpas[name]["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert hpas[name]["spec"]["minReplicas"] == 2
    assert hpas["service-a"]["spec"]["maxReplicas"] == 6
    assert [m["resource"]["name"] for m in hpas["service-b"]["spec"]["metrics"]] == ["cpu", "memory"]
    assert [m["resource"]["name"] for m in hpas["service-a"]["spec"]["metrics"]] == ["cpu"]


def test_workloads_drain_spread_and_leave_replicas_to_the_autoscaler(rendered):
    _directory, objects = rendered
    configmaps = by_kind(objects, "ConfigMap")
    for name, deployment in by_kind(objects, "Deployment").items():
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        graceful = int(configmaps[f"{name}-config"]["data"]["CLOUDPHOENIX_GRACEFUL_TIMEOUT"])
        sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert graceful == 20, "services/gunicorn.conf.py's default, set explicitly"
        assert pod["terminationGracePeriodSeconds"] >= sleep + graceful
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert [c["topologyKey"] for c in pod["topologySpreadConstraints"]] == [
            "topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        assert "@sha256:" in container["image"]
        secret_env = {e["name"]: e["value"] for e in container["env"]}
        assert secret_env == {"CLOUDPHOENIX_DB_PASSWORD_FILE": "/var/run/secrets/cloudphoenix/CLOUDPHOENIX_DB_PASSWORD"}
    for account in by_kind(objects, "ServiceAccount").values():
        assert account["automountServiceAccountToken"] is False
    services = by_kind(objects, "Service")
    assert services["service-a"]["spec"]["ports"][0]["port"] == 8080
    assert services["service-b"]["spec"]["ports"][0]["port"] == 8081


def test_rendered_configmaps_are_accepted_by_the_services_own_settings_loader(rendered, tmp_path):
    """The real services code (cloudphoenix_services.core.config) validates what the pods will get."""
    from cloudphoenix_services.core.config import load_settings

    _directory, objects = rendered
    password = tmp_path / "password"
    password.write_text("not-a-real-password\n")
    for name, spec_name in (("service-a", "service_a"), ("service-b", "service_b")):
        env = dict(by_kind(objects, "ConfigMap")[f"{name}-config"]["data"])
        assert env["CLOUDPHOENIX_SERVICE"] == spec_name
        env["CLOUDPHOENIX_DB_PASSWORD_FILE"] = str(password)
        settings = load_settings(spec_name, env, needs_bucket=(name == "service-b"))
        assert "target_session_attrs=read-write" in settings.db_dsn
        assert settings.region == "east"


def test_dr_standby_runs_warm_with_standby_replicas(render_with):
    run, objects = render_with({"k8s_policies_region_role": "standby", "k8s_workloads_region_role": "standby",
                                "k8s_workloads_region": "west"})
    assert run.rc == 0, run.stdout
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    assert {name: hpa["spec"]["minReplicas"] for name, hpa in hpas.items()} == {"service-a": 1, "service-b": 1}
    assert hpas["service-a"]["spec"]["maxReplicas"] == 6, "a standby can still scale on load"
    deployment = by_kind(objects, "Deployment")["service-a"]
    assert deployment["metadata"]["labels"]["cloudphoenix.io/region-role"] == "standby"
    assert "cloudphoenix.io/region-role" not in deployment["spec"]["template"]["metadata"]["labels"]


def test_repoint_changes_the_dsn_and_rolls_the_pods_and_nothing_else(rendered, render_with):
    """What the failover runbook does: the new primary first in the DSN -> new config hash -> rollout."""
    _directory, before = rendered
    run, after = render_with({"k8s_workloads_database_hosts": ["db-west.phoenix.internal", "db-east.phoenix.internal"]})
    assert run.rc == 0, run.stdout
    changed = [f"{old['kind']}/{old['metadata']['name']}"
               for (_old_path, old), (_new_path, new) in zip(before, after, strict=True) if old != new]
    assert changed == ["ConfigMap/service-a-config", "Deployment/service-a",
                       "ConfigMap/service-b-config", "Deployment/service-b"]
    dsn = by_kind(after, "ConfigMap")["service-a-config"]["data"]["CLOUDPHOENIX_DB_DSN"]
    assert dsn.startswith("host=db-west.phoenix.internal,db-east.phoenix.internal port=5432,5432 ")
    data = by_kind(after, "ConfigMap")["service-a-config"]["data"]
    expected_hash = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    annotations = by_kind(after, "Deployment")["service-a"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["cloudphoenix.io/config-hash"] == expected_hash


def test_render_is_idempotent_and_check_mode_writes_nothing(render_with, tmp_path):
    first, objects = render_with()
    assert first.rc == 0 and first.total("changed") > 0
    # same directory again: the render counter moves on, so re-run into the first one explicitly
    dest = objects[0][0].parent
    from tests.k8s.conftest import render

    again = render(dest)
    assert again.rc == 0 and again.total("changed") == 0, again.stdout
    fresh = tmp_path / "check-mode"
    check = render(fresh, "--check", "--diff")
    assert check.rc == 0, check.stdout
    assert check.total("changed") > 0, "check mode reports what it would write"
    assert not fresh.exists() or not any(fresh.iterdir())


def test_render_dir_holds_only_the_two_role_files(rendered):
    directory, _objects = rendered
    assert sorted(p.name for p in directory.iterdir()) == ["k8s_policies.yaml", "k8s_workloads.yaml"]
    text = (directory / "k8s_policies.yaml").read_text()
    assert text.startswith("---\n") and text.count("\n---\n") + 1 == len(
        [doc for doc in yaml.safe_load_all(text) if doc])


def test_monitoring_namespace_may_scrape_the_service_ports(render_with):
    run, objects = render_with({"k8s_policies_monitoring_namespace": "monitoring",
                                "k8s_policies_monitoring_pod_labels": {"app.kubernetes.io/name": "prometheus"}})
    assert run.rc == 0, run.stdout
    policies = by_kind(objects, "NetworkPolicy")
    for name, port in (("service-a", 8080), ("service-b", 8081)):
        rules = policies[f"{name}-ingress"]["spec"]["ingress"]
        scrapers = [rule for rule in rules
                    if rule["from"][0].get("namespaceSelector", {}).get("matchLabels")
                    == {"kubernetes.io/metadata.name": "monitoring"}]
        assert len(scrapers) == 1
        assert scrapers[0]["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
        assert scrapers[0]["ports"] == [{"port": port, "protocol": "TCP"}]
    for version in K8S_VERSIONS:
        assert [e for _path, doc in objects for e in _errors(doc, version)] == []
