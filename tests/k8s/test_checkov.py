"""checkov (the real scanner, 3.3.30) on the manifests the roles render: no failed check.

checkov pins dependencies that conflict with the project's venv (boto3, packaging, ...), so it
lives in its own venv: .build/tools-venv (see docs/kubernetes.md). CHECKOV=/path/to/checkov
overrides. Without it the test is skipped and says how to install it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.ansible import REPO_ROOT

CONFIG = Path(__file__).parent / "checkov.yaml"


def _checkov() -> str:
    for candidate in (os.environ.get("CHECKOV"), str(REPO_ROOT / ".build" / "tools-venv" / "bin" / "checkov"),
                      shutil.which("checkov")):
        if candidate and Path(candidate).exists():
            return candidate
    message = "checkov not installed: `make setup` puts it in .build/tools-venv"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI ran make setup: a missing checkov is a broken setup, not a skip
    pytest.skip(message)
    return ""  # unreachable


def _scan(directory: Path) -> dict:
    proc = subprocess.run(
        [_checkov(), "--config-file", str(CONFIG), "-d", str(directory), "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    report = json.loads(proc.stdout)
    return report[0] if isinstance(report, list) else report


def test_rendered_manifests_pass_every_checkov_check(rendered):
    directory, _objects = rendered
    report = _scan(directory)
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 100
    assert report["results"].get("skipped_checks", []) == []
    scanned = {c["resource"].split(".")[0] for c in report["results"]["passed_checks"]}
    assert {"Deployment", "ServiceAccount", "Service", "ConfigMap"} <= scanned
    on_deployments = {c["check_id"] for c in report["results"]["passed_checks"] if c["resource"].startswith("Deploy")}
    # privileged, escalation, read-only root, root, NET_RAW, capabilities, SA token, secrets as files, digest
    assert {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28", "CKV_K8S_37", "CKV_K8S_38",
            "CKV_K8S_35", "CKV_K8S_43"} <= on_deployments


def test_checkov_flags_a_privileged_pod(tmp_path):
    """Negative control: the same scan, on a deliberately bad pod, fails."""
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad, namespace: x}\n"
        "spec:\n  containers:\n    - name: c\n      image: nginx\n      securityContext: {privileged: true}\n"
    )
    report = _scan(tmp_path)
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert {"CKV_K8S_16", "CKV_K8S_43"} <= failed  # privileged container, image without digest
