"""A MOCK Kubernetes API server: an in-memory object store that speaks just enough of the API.

No Kubernetes API server can run on our machines (no container engine, no kube-apiserver in any
registry we reach; see tests/k8s/), so the failover's Kubernetes tasks are run against this mock,
one per cluster, in the same way tests/k8s/test_bad_input.py points kubernetes.core at a recorder.
This one also stores what it is sent, because the tasks read objects back (apply, scale, wait):

- discovery (/version, /api, /apis, /api/v1, /apis/<group>/<version>) for the kinds the roles use;
- GET/POST/PATCH (JSON merge patch, RFC 7386 - kubernetes.core's apply sends merge patches)/DELETE
  of namespaced objects, the ``deployments/<name>/scale`` subresource, ``?dryRun=All`` honoured
  (answered, not stored);
- a Deployment's status is made up as "fully rolled out" at once (no controller, no pods).

It proves which requests the tasks send and in which cluster; it cannot prove what a real API server
does with them (admission, strategic merge of lists, HPA and rollout controllers, real readiness).
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

# (group, version) -> [(plural, kind, namespaced)]
RESOURCES: dict[tuple[str, str], list[tuple[str, str, bool]]] = {
    ("", "v1"): [("namespaces", "Namespace", False), ("configmaps", "ConfigMap", True),
                 ("services", "Service", True), ("serviceaccounts", "ServiceAccount", True),
                 ("secrets", "Secret", True), ("resourcequotas", "ResourceQuota", True),
                 ("limitranges", "LimitRange", True), ("pods", "Pod", True)],
    ("apps", "v1"): [("deployments", "Deployment", True)],
    ("autoscaling", "v2"): [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("networking.k8s.io", "v1"): [("networkpolicies", "NetworkPolicy", True)],
}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict | None

    @property
    def dry_run(self) -> bool:
        return "All" in self.query.get("dryRun", [])

    @property
    def mutating(self) -> bool:
        """A request that changes the cluster (dry runs do not)."""
        return self.method in MUTATING and not self.dry_run


def merge_patch(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch."""
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = merge_patch(out.get(key, {}), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resource_list(group: str, version: str) -> dict:
    items = []
    for plural, kind, namespaced in RESOURCES[(group, version)]:
        items.append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                      "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
        if kind == "Deployment":
            items.append({"name": "deployments/scale", "singularName": "", "namespaced": True, "group": "autoscaling",
                          "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
            items.append({"name": "deployments/status", "singularName": "", "namespaced": True, "kind": "Deployment",
                          "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}".lstrip("/"),
            "resources": items}


def _discovery(path: str) -> dict | None:
    if path == "/version":
        return {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        groups = [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                   "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}} for g, v in RESOURCES if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    if path == "/api/v1":
        return _resource_list("", "v1")
    parts = path.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "apis" and (parts[1], parts[2]) in RESOURCES:
        return _resource_list(parts[1], parts[2])
    return None


class Cluster:
    """The stored objects of one mock cluster: {(group/version, plural, namespace, name): object}."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str, str], dict] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()

    @staticmethod
    def _kind(gv: str, plural: str) -> str:
        group, _sep, version = gv.rpartition("/")
        return {p: k for p, k, _ns in RESOURCES[(group, version)]}[plural]

    def add(self, obj: dict) -> None:
        """Seed an object (as if created earlier), e.g. the warm-standby Deployments."""
        gv = obj["apiVersion"]
        group, _sep, version = gv.rpartition("/")
        plural = next(p for p, k, _ns in RESOURCES[(group, version)] if k == obj["kind"])
        meta = obj["metadata"]
        self.objects[(gv, plural, meta.get("namespace", ""), meta["name"])] = self._stored(obj, None)

    def get(self, gv: str, plural: str, namespace: str, name: str) -> dict | None:
        return self.objects.get((gv, plural, namespace, name))

    @staticmethod
    def _stored(obj: dict, old: dict | None) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        old_meta = (old or {}).get("metadata", {})
        meta["uid"] = old_meta.get("uid", str(uuid.uuid4()))
        meta["resourceVersion"] = str(int(old_meta.get("resourceVersion", "0")) + 1)
        changed_spec = old is None or old.get("spec") != obj.get("spec")
        meta["generation"] = int(old_meta.get("generation", 0)) + (1 if changed_spec else 0)
        if obj.get("kind") == "Deployment":
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)   # the API server's default when the HPA owns the count
            replicas = spec["replicas"]
            obj["status"] = {"observedGeneration": meta["generation"], "replicas": replicas,
                             "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                             "conditions": [
                                 {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                                 {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}
            if replicas == 0:
                for key in ("updatedReplicas", "readyReplicas", "availableReplicas"):
                    obj["status"].pop(key)
                obj["status"]["replicas"] = None
                obj["status"] = {k: v for k, v in obj["status"].items() if v is not None}
        return obj

    def handle(self, method: str, raw_path: str, body: dict | None) -> tuple[int, dict]:
        url = urlsplit(raw_path)
        request = Request(method, url.path, parse_qs(url.query), body)
        with self.lock:
            self.requests.append(request)
            if method == "GET" and (found := _discovery(url.path)) is not None:
                return 200, found
            return self._object(request)

    def _object(self, req: Request) -> tuple[int, dict]:
        parts = req.path.strip("/").split("/")
        if parts[0] == "api":
            gv, rest = parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) > 2:
            gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            return _status(404, "no such path")
        namespace = ""
        if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
            namespace, rest = rest[1], rest[2:]
        plural, name = rest[0], (rest[1] if len(rest) > 1 else "")
        subresource = rest[2] if len(rest) > 2 else ""
        key = (gv, plural, namespace, name)
        current = self.objects.get(key)
        if not name:
            if req.method == "GET":
                items = [o for (g, p, ns, _n), o in self.objects.items()
                         if g == gv and p == plural and (not namespace or ns == namespace)]
                return 200, {"kind": self._kind(gv, plural) + "List", "apiVersion": gv, "metadata": {}, "items": items}
            if req.method == "POST" and req.body:
                new_key = (gv, plural, namespace, req.body["metadata"]["name"])
                if new_key in self.objects:
                    return _status(409, "already exists")
                stored = self._stored(req.body, None)
                if not req.dry_run:
                    self.objects[new_key] = stored
                return 201, stored
            return _status(405, "not supported by the mock")
        if current is None:
            return _status(404, f'{plural} "{name}" not found')
        if subresource == "scale":
            if req.method in ("PATCH", "PUT") and req.body:
                replicas = req.body.get("spec", {}).get("replicas", current["spec"].get("replicas"))
                updated = self._stored(merge_patch(current, {"spec": {"replicas": replicas}}), current)
                if not req.dry_run:
                    self.objects[key] = updated
                current = updated
            return 200, {"kind": "Scale", "apiVersion": "autoscaling/v1",
                         "metadata": {"name": name, "namespace": namespace},
                         "spec": {"replicas": current["spec"].get("replicas", 1)},
                         "status": {"replicas": current.get("status", {}).get("replicas", 0)}}
        if req.method == "GET":
            return 200, current
        if req.method == "PATCH" and req.body is not None:
            updated = self._stored(merge_patch(current, req.body), current)
            if not req.dry_run:
                self.objects[key] = updated
            return 200, updated
        if req.method == "DELETE":
            if not req.dry_run:
                del self.objects[key]
            return 200, _status(200, "deleted")[1]
        return _status(405, "not supported by the mock")


def _status(code: int, message: str) -> tuple[int, dict]:
    reason = {404: "NotFound", 409: "AlreadyExists", 405: "MethodNotAllowed"}.get(code, "")
    return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure" if code >= 400 else "Success",
                  "message": message, "reason": reason, "code": code}


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        code, payload = self.server.cluster.handle(self.command, self.path, body)  # type: ignore[attr-defined]
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@dataclass
class MockCluster:
    """One mock cluster on a free loopback port; `cluster` holds its objects and the requests it got."""

    name: str
    cluster: Cluster = field(default_factory=Cluster)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}"

    def start(self) -> MockCluster:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.cluster = self.cluster  # type: ignore[attr-defined]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def write_kubeconfig(path: Path, contexts: dict[str, str]) -> Path:
    """A kubeconfig with one context (and cluster) per name -> server URL; a dummy token."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": next(iter(contexts)),
        "clusters": [{"name": n, "cluster": {"server": url}} for n, url in contexts.items()],
        "users": [{"name": "failover", "user": {"token": "mock-token-not-a-secret"}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "failover"}} for n in contexts],
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def mock_clusters(*names: str) -> Iterator[dict[str, MockCluster]]:
    clusters = {name: MockCluster(name).start() for name in names}
    try:
        yield clusters
    finally:
        for cluster in clusters.values():
            cluster.stop()
