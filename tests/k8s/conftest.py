"""Fixtures for the Kubernetes role tests: manifests rendered by the real roles (render mode).

No Kubernetes API server can run on our machines, so everything here works on the files the
roles write with k8s_*_render_dir; test_live.py covers a real cluster when KUBECONFIG is set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.support.ansible import REPO_ROOT, PlaybookRun, run_playbook

RENDER_PLAYBOOK = REPO_ROOT / "playbooks" / "k8s_render.yml"
PRODUCTION_VARS = Path(__file__).parent / "vars" / "production.yml"
# Oldest and newest Kubernetes versions the collection supports (docs/kubernetes.md).
K8S_VERSIONS = ("1.31.0", "1.37.0")


def load_dir(path: Path) -> list[tuple[Path, dict]]:
    """(file, object) for every YAML document in the directory, sorted by file name."""
    out = []
    for file in sorted(path.glob("*.yaml")):
        out += [(file, doc) for doc in yaml.safe_load_all(file.read_text()) if doc]
    return out


def render(dest: Path, *extra_args: str, extra_vars: dict | None = None) -> PlaybookRun:
    """Render PRODUCTION_VARS, then `extra_vars` (a later -e wins), to `dest`."""
    overrides = json.dumps({"k8s_render_dir": str(dest), **(extra_vars or {})})
    return run_playbook(RENDER_PLAYBOOK, "-e", f"@{PRODUCTION_VARS}", "-e", overrides, *extra_args)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[Path, dict]]]:
    """The active region's manifests, rendered once per session by the roles themselves."""
    dest = tmp_path_factory.mktemp("k8s-active")
    run = render(dest)
    assert run.rc == 0, run.stdout + run.stderr
    return dest, load_dir(dest)


@pytest.fixture
def render_with(tmp_path: Path) -> Callable[..., tuple[PlaybookRun, list[tuple[Path, dict]]]]:
    """Render with extra variables into a fresh directory: (run, objects)."""
    counter = iter(range(100))

    def _render(extra_vars: dict | None = None, *extra_args: str):
        dest = tmp_path / f"render-{next(counter)}"
        run = render(dest, *extra_args, extra_vars=extra_vars)
        return run, (load_dir(dest) if dest.exists() else [])

    return _render


def by_kind(objects: list[tuple[Path, dict]], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _path, doc in objects if doc["kind"] == kind}
