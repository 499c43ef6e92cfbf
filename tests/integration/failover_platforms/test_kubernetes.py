"""tasks/platform_kubernetes.yml against two MOCK Kubernetes API servers (east = old region, west = DR).

A mock, because no Kubernetes API server can run on our machines (no container engine, no
kube-apiserver in any registry we reach; docs/kubernetes.md). k8s_mock.py is an in-memory object
store that answers discovery, GET/POST/PATCH (JSON merge patch) and the Deployment scale subresource,
honours ``dryRun=All`` and says every Deployment is rolled out at once. Each cluster is seeded with what
the real roles apply (playbooks/k8s_apply.yml): west as the warm standby, east as the active region.

The tests assert the requests the tasks send, to which cluster, and what ends up stored. They cannot
prove what a real cluster does with them: admission and strategic-merge semantics, the HPA controller
honouring the new minimum (and leaving a Deployment at 0 replicas alone), pods really rolling and
becoming Ready against the new primary. tests/k8s/test_live.py is the place for that (KUBECONFIG).
"""

from __future__ import annotations

import copy
import json
import socket
import time
from pathlib import Path

import pytest

from tests.integration.failover_platforms.conftest import run_steps
from tests.integration.failover_platforms.k8s_mock import mock_clusters, write_kubeconfig
from tests.k8s.conftest import PRODUCTION_VARS
from tests.support.ansible import REPO_ROOT, run_playbook
from tests.support.net import free_port

NAMESPACE = "cloudphoenix-prod"
SERVICES = {"service-a": 2, "service-b": 2}   # name -> min_replicas in PRODUCTION_VARS
DB_EAST, DB_WEST = "cp-prod-db.abc.us-east-1.rds.amazonaws.com", "cp-prod-db-west.abc.us-west-2.rds.amazonaws.com"
STEPS = [("platform_kubernetes", {"failover_k8s_step": "fence"}),
         ("platform_kubernetes", {"failover_k8s_step": "repoint"})]
APPLY = REPO_ROOT / "playbooks" / "k8s_apply.yml"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Each region's cluster as the real roles leave it (playbooks/k8s_apply.yml against a mock): west standby."""
    out = {}
    for region, role in (("east", "active"), ("west", "standby")):
        tmp = tmp_path_factory.mktemp(f"seed-{region}")
        with mock_clusters(region) as clusters:
            kubeconfig = write_kubeconfig(tmp / "kubeconfig", {region: clusters[region].url})
            overrides = {"k8s_workloads_region": region, "k8s_workloads_region_role": role,
                         "k8s_policies_region_role": role, "k8s_workloads_database_hosts": [DB_EAST, DB_WEST],
                         "k8s_policies_kubeconfig": str(kubeconfig), "k8s_workloads_kubeconfig": str(kubeconfig),
                         "k8s_policies_context": region, "k8s_workloads_context": region}
            run = run_playbook(APPLY, "-e", f"@{PRODUCTION_VARS}", "-e", json.dumps(overrides))
            assert run.rc == 0, run.stdout[-3000:]
            out[region] = copy.deepcopy(clusters[region].cluster.objects)
    return out


def seed(cluster, objects: dict, deployment_replicas: int) -> None:
    cluster.objects = copy.deepcopy(objects)
    for (_gv, plural, _ns, _name), obj in cluster.objects.items():
        if plural == "deployments":
            obj["spec"]["replicas"] = deployment_replicas   # the HPA's current count


def play_vars(kubeconfig: Path, **overrides) -> dict:
    return {
        "cloudphoenix_primary_region": "east",
        "failover_target_region": "west",
        "failover_k8s_clusters": {"east": {"kubeconfig": str(kubeconfig), "context": "east"},
                                  "west": {"kubeconfig": str(kubeconfig), "context": "west"}},
        "k8s_workloads_database_hosts": [DB_EAST, DB_WEST],
        # what platform_rds.yml leaves behind: the promoted replica's endpoint
        "failover_rds": {"endpoint": DB_WEST},
        "failover_k8s_rollout_timeout": 30,
        "failover_k8s_old_cluster_timeout": 15,
        **overrides,
    }


def mutations(cluster) -> list[str]:
    return [f"{r.method} {r.path}" for r in cluster.cluster.requests if r.mutating]


def content(obj: dict) -> dict:
    """An object without what the server bumps on every write (resourceVersion, generation, status)."""
    meta = {k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "generation")}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def deployment(cluster, name: str) -> dict:
    return cluster.cluster.get("apps/v1", "deployments", NAMESPACE, name)


def test_fence_scales_the_old_region_to_zero_and_repoint_moves_the_dr_region(seeds, tmp_path: Path):
    with mock_clusters("east", "west") as clusters:
        seed(clusters["east"].cluster, seeds["east"], deployment_replicas=3)
        seed(clusters["west"].cluster, seeds["west"], deployment_replicas=1)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {n: c.url for n, c in clusters.items()})

        first = run_steps(tmp_path, STEPS, play_vars(kubeconfig), inventory_vars=[PRODUCTION_VARS])
        assert first.run.rc == 0, first.output[-5000:]

        east, west = clusters["east"], clusters["west"]
        # old region: exactly the two scale-downs, nothing else changed there
        assert sorted(mutations(east)) == sorted(
            f"PATCH /apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}/scale" for name in SERVICES)
        for name in SERVICES:
            assert deployment(east, name)["spec"]["replicas"] == 0
        # DR region: DSN with the new primary first, pods rolled, HPA minimum raised, scaled up
        west_changes = mutations(west)
        for name, minimum in SERVICES.items():
            assert f"PATCH /api/v1/namespaces/{NAMESPACE}/configmaps/{name}-config" in west_changes
            assert f"PATCH /apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}" in west_changes
            assert f"PATCH /apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/{name}" in west_changes
            assert f"PATCH /apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}/scale" in west_changes
            config = west.cluster.get("v1", "configmaps", NAMESPACE, f"{name}-config")["data"]
            assert f"host={DB_WEST},{DB_EAST} " in config["CLOUDPHOENIX_DB_DSN"], config
            assert "target_session_attrs=read-write" in config["CLOUDPHOENIX_DB_DSN"]
            hpa = west.cluster.get("autoscaling/v2", "horizontalpodautoscalers", NAMESPACE, name)
            assert hpa["spec"]["minReplicas"] == minimum
            assert deployment(west, name)["spec"]["replicas"] == minimum
            before = seeds["west"][("apps/v1", "deployments", NAMESPACE, name)]
            assert (deployment(west, name)["spec"]["template"]["metadata"]["annotations"]
                    != before["spec"]["template"]["metadata"]["annotations"]), "the pods would not roll"
        region = west.cluster.get("v1", "configmaps", NAMESPACE, "service-a-config")["data"]["CLOUDPHOENIX_REGION"]
        assert region == "west"

        facts = first.facts
        assert facts["failover_k8s_fence"]["reachable"] is True
        assert sorted(facts["failover_k8s_fence"]["scaled_to_zero"]) == sorted(SERVICES)
        assert facts["failover_fence_services"]["stdout"].startswith("kubernetes east: scaled to 0: ")
        assert facts["failover_k8s_repoint"]["database_hosts"][:2] == [DB_WEST, DB_EAST]
        assert sorted(facts["failover_k8s_repoint"]["replicas"]) == ["service-a=2", "service-b=2"]

        # second run: nothing left to do, in either cluster. kubernetes.core's apply re-sends list fields it
        # cannot diff (ports, policyTypes, ...) as a merge patch even when nothing differs - a no-op on the server
        before = {n: {k: content(o) for k, o in c.cluster.objects.items()} for n, c in clusters.items()}
        count = {n: len(mutations(c)) for n, c in clusters.items()}
        second = run_steps(tmp_path, STEPS, play_vars(kubeconfig), inventory_vars=[PRODUCTION_VARS])
        assert second.run.rc == 0, second.output[-5000:]
        assert second.run.total("changed") == 0, second.output[-5000:]
        assert {n: {k: content(o) for k, o in c.cluster.objects.items()} for n, c in clusters.items()} == before
        again = [m for n, c in clusters.items() for m in mutations(c)[count[n]:]]
        assert not [m for m in again if m.endswith("/scale") or not m.startswith("PATCH")], again


def test_check_mode_sends_no_change_to_either_cluster(seeds, tmp_path: Path):
    with mock_clusters("east", "west") as clusters:
        seed(clusters["east"].cluster, seeds["east"], deployment_replicas=3)
        seed(clusters["west"].cluster, seeds["west"], deployment_replicas=1)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {n: c.url for n, c in clusters.items()})

        run = run_steps(tmp_path, STEPS, play_vars(kubeconfig), "--check", "--diff", inventory_vars=[PRODUCTION_VARS])
        assert run.run.rc == 0, run.output[-5000:]
        for cluster in clusters.values():
            assert mutations(cluster) == [], f"{cluster.name} was changed in check mode"
            assert cluster.cluster.requests, f"{cluster.name} was not even read"
        assert deployment(clusters["east"], "service-a")["spec"]["replicas"] == 3
        assert deployment(clusters["west"], "service-a")["spec"]["replicas"] == 1
        assert run.facts["failover_fence_services"]["stdout"].startswith("kubernetes east: would scale to 0: ")
        assert "would scale" in run.facts["failover_repoint"]["msg"]
        assert run.run.total("changed") > 0, "check mode should report what would change"


@pytest.mark.parametrize("clusters", [
    {}, {"east": {"context": "east"}}, {"east": {"context": "c"}, "west": {"context": "c"}},
], ids=["none", "dr-missing", "same-context"])
def test_regions_without_their_own_cluster_are_refused_first(tmp_path: Path, clusters):
    """Else the default context (possibly the DR cluster) would get the old region's scale to 0."""
    run = run_steps(tmp_path, STEPS, play_vars(tmp_path / "no-kubeconfig", failover_k8s_clusters=clusters),
                    inventory_vars=[PRODUCTION_VARS])
    assert run.run.rc != 0
    assert "failover_k8s_clusters must give regions east and west each their own" in run.run.stdout, run.output[-3000:]
    assert "Nothing was changed." in run.run.stdout
    assert run.run.total("changed") == 0


@pytest.mark.parametrize("failure", ["refused", "hangs"])
def test_unreachable_old_cluster_is_recorded_as_skipped_and_the_dr_region_still_moves(seeds, tmp_path: Path, failure):
    """The old region's API is gone: nothing listens (refused), or it accepts and never answers (hangs)."""
    with mock_clusters("west") as clusters, socket.socket() as blackhole:
        seed(clusters["west"].cluster, seeds["west"], deployment_replicas=1)
        if failure == "refused":
            dead = f"http://127.0.0.1:{free_port()}"
        else:   # the kernel completes the handshake (backlog); no one ever reads the request
            blackhole.bind(("127.0.0.1", 0))
            blackhole.listen(8)
            dead = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"east": dead, "west": clusters["west"].url})

        started = time.monotonic()
        run = run_steps(tmp_path, STEPS, play_vars(kubeconfig, failover_k8s_old_cluster_timeout=5),
                        inventory_vars=[PRODUCTION_VARS])
        assert run.run.rc == 0, run.output[-5000:]
        fence = run.facts["failover_k8s_fence"]
        assert fence["reachable"] is False and fence["scaled_to_zero"] == []
        fenced = run.facts["failover_fence_services"]["stdout"]
        assert fenced.startswith("kubernetes east: skipped, cluster unreachable"), fenced
        for name, minimum in SERVICES.items():
            assert deployment(clusters["west"], name)["spec"]["replicas"] == minimum
        assert time.monotonic() - started < 120
