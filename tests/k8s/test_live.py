"""Live: apply, re-apply (changed=0), check mode + diff, delete, against a real cluster.

Skipped unless KUBECONFIG points at a cluster (no API server can run on our machines). Run with
e.g. kind or any throwaway cluster whose nodes carry topology.kubernetes.io/zone labels:

    KUBECONFIG=~/.kube/config .venv/bin/python -m pytest tests/k8s/test_live.py -m live_k8s -v

It works in its own namespace (cloudphoenix-live-<random>) and deletes it at the end. Pods may
stay Pending/ImagePullBackOff when the images are not reachable from the cluster; the test is
about the objects, not the pods (set K8S_LIVE_IMAGE_A/B to images the cluster can pull).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator

import pytest
import yaml

from tests.k8s.conftest import PRODUCTION_VARS
from tests.support.ansible import REPO_ROOT, PlaybookRun, run_playbook

pytestmark = [
    pytest.mark.live_k8s,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs KUBECONFIG pointing at a real cluster"),
]

APPLY = REPO_ROOT / "playbooks" / "k8s_apply.yml"


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    name = f"cloudphoenix-live-{secrets.token_hex(3)}"
    yield name
    from kubernetes import client, config

    config.load_kube_config()
    try:
        client.CoreV1Api().delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def _apply(namespace: str, *args: str, **overrides) -> PlaybookRun:
    extra = {"k8s_policies_namespace": namespace, "k8s_workloads_namespace": namespace, **overrides}
    images = [os.environ.get("K8S_LIVE_IMAGE_A"), os.environ.get("K8S_LIVE_IMAGE_B")]
    if any(images):
        services = yaml.safe_load(PRODUCTION_VARS.read_text())["k8s_workloads_services"]
        for service, image in zip(services, images, strict=True):
            service["image"] = image or service["image"]
        extra["k8s_workloads_services"] = services
    return run_playbook(APPLY, "-e", f"@{PRODUCTION_VARS}", "-e", json.dumps(extra), *args)


def test_apply_reapply_check_diff_delete(namespace):
    from kubernetes import client, config

    config.load_kube_config()
    core = client.CoreV1Api()

    first = _apply(namespace)
    assert first.rc == 0, first.stdout[-4000:]
    assert first.total("changed") > 0
    assert "violate PodSecurity" not in first.stdout + first.stderr

    labels = core.read_namespace(namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

    again = _apply(namespace)
    assert again.rc == 0, again.stdout[-4000:]
    assert again.total("changed") == 0, again.stdout[-4000:]

    # check mode + diff: a repoint is reported with a diff, and nothing changes in the cluster
    before = core.read_namespaced_config_map("service-a-config", namespace).data
    check = _apply(namespace, "--check", "--diff",
                   k8s_workloads_database_hosts=["db-west.phoenix.internal", "db-east.phoenix.internal"])
    assert check.rc == 0, check.stdout[-4000:]
    assert check.total("changed") > 0
    assert "db-west.phoenix.internal,db-east.phoenix.internal" in check.stdout
    assert core.read_namespaced_config_map("service-a-config", namespace).data == before

    # Pod Security Admission really enforces `restricted` in the namespace: a root pod is refused
    bad = client.V1Pod(metadata=client.V1ObjectMeta(name="root"),
                       spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]))
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(namespace, bad, dry_run="All")
    assert refused.value.status == 403 and "PodSecurity" in refused.value.body

    gone = _apply(namespace, k8s_state="absent")
    assert gone.rc == 0, gone.stdout[-4000:]
    assert gone.total("changed") > 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            core.read_namespace(namespace)
        except client.ApiException as exc:
            assert exc.status == 404
            break
        time.sleep(2)
    else:
        pytest.fail(f"namespace {namespace} still exists 120 s after delete")
