"""Both platform task files in the order main.yml runs them: fence (RDS, Kubernetes), promote, repoint.

The promoted RDS endpoint (set by platform_rds.yml) must become the first host of the DR services' DSN
(platform_kubernetes.yml). Patched moto for RDS, MOCK API servers for the clusters: see test_rds.py and
test_kubernetes.py for what each can and cannot show.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.failover_platforms.conftest import run_steps
from tests.integration.failover_platforms.k8s_mock import mock_clusters, write_kubeconfig
from tests.integration.failover_platforms.test_kubernetes import NAMESPACE, SERVICES, deployment, seed, seeds
from tests.integration.failover_platforms.test_rds import PRIMARY, REPLICA, describe, make_pair
from tests.k8s.conftest import PRODUCTION_VARS

__all__ = ["seeds"]   # the module-scoped fixture, shared with test_kubernetes.py

STEPS = [("platform_rds", {"failover_rds_step": "fence"}), ("platform_kubernetes", {"failover_k8s_step": "fence"}),
         ("platform_rds", {"failover_rds_step": "promote"}), ("platform_kubernetes", {"failover_k8s_step": "repoint"})]


def test_rds_promotion_feeds_the_kubernetes_repoint(moto_rds, seeds, tmp_path: Path):
    pair = make_pair(moto_rds)
    new_endpoint = pair["replica"]["Endpoint"]["Address"]
    old_endpoint = pair["primary"]["Endpoint"]["Address"]
    with mock_clusters("east", "west") as clusters:
        seed(clusters["east"].cluster, seeds["east"], deployment_replicas=2)
        seed(clusters["west"].cluster, seeds["west"], deployment_replicas=1)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {n: c.url for n, c in clusters.items()})
        play_vars = {
            "cloudphoenix_primary_region": "east", "failover_target_region": "west",
            "failover_rds_endpoint_url": moto_rds.endpoint_url,
            "failover_rds_instances": {"east": {"identifier": PRIMARY, "aws_region": "us-east-1"},
                                       "west": {"identifier": REPLICA, "aws_region": "us-west-2"}},
            "failover_rds_poll_interval": 1, "failover_rds_promote_timeout": 30,
            "failover_k8s_clusters": {"east": {"kubeconfig": str(kubeconfig), "context": "east"},
                                      "west": {"kubeconfig": str(kubeconfig), "context": "west"}},
            "k8s_workloads_database_hosts": [old_endpoint, new_endpoint],
            "failover_k8s_rollout_timeout": 30,
        }
        run = run_steps(tmp_path, STEPS, play_vars, inventory_vars=[PRODUCTION_VARS])
        assert run.run.rc == 0, run.output[-5000:]

        assert not describe(moto_rds, "us-west-2", REPLICA).get("ReadReplicaSourceDBInstanceIdentifier")
        assert describe(moto_rds, "us-east-1", PRIMARY)["DBInstanceStatus"] == "stopped"
        for name, minimum in SERVICES.items():
            dsn = clusters["west"].cluster.get("v1", "configmaps", NAMESPACE, f"{name}-config")["data"]
            assert f"host={new_endpoint},{old_endpoint} " in dsn["CLOUDPHOENIX_DB_DSN"]
            assert deployment(clusters["west"], name)["spec"]["replicas"] == minimum
            assert deployment(clusters["east"], name)["spec"]["replicas"] == 0
        assert run.facts["failover_k8s_repoint"]["database_hosts"] == [new_endpoint, old_endpoint]
        assert "database" not in run.facts["failover_fence_services"]["stdout"]
        assert "old primary: stopping" in run.facts["failover_fence_db"]["method"]
