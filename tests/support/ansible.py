"""Run a collection module for real, the way Ansible does, without a playbook's start-up cost.

`run_module()` executes the module file with the venv's Python and an args file
({"ANSIBLE_MODULE_ARGS": ...}), which is what AnsiballZ hands a module; check and diff mode
are the `_ansible_check_mode` / `_ansible_diff` flags. `run_playbook()` is for role- and
playbook-level behaviour (changed counts, --check, --diff).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO_ROOT / ".build" / "collections"
MODULES = REPO_ROOT / "plugins" / "modules"


def ansible_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_HOME=str(REPO_ROOT / ".build" / "ansible-home"),
        PYTHONPATH=os.pathsep.join([str(COLLECTIONS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    env.update(extra or {})
    return env


@dataclass
class ModuleResult:
    result: dict
    stdout: str
    stderr: str
    rc: int

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))

    @property
    def changed(self) -> bool:
        return bool(self.result.get("changed"))

    def __getitem__(self, key: str):
        return self.result[key]

    def get(self, key: str, default=None):
        return self.result.get(key, default)


def run_module(name: str, args: dict, *, check: bool = False, diff: bool = False,
               env: dict[str, str] | None = None, timeout: float = 120) -> ModuleResult:
    """Run plugins/modules/<name>.py with `args`; returns its JSON result (failed ones included)."""
    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": diff}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(payload, handle)
        args_file = handle.name
    try:
        proc = subprocess.run(
            [sys.executable, str(MODULES / f"{name}.py"), args_file],
            capture_output=True, text=True, env=ansible_env(env), timeout=timeout, check=False,
        )
    finally:
        os.unlink(args_file)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        result = {"failed": True, "msg": f"module printed non-JSON: {proc.stdout[-2000:]}"}
    if not result:
        result = {"failed": True, "msg": f"module printed nothing (rc={proc.returncode}): {proc.stderr[-2000:]}"}
    return ModuleResult(result=result, stdout=proc.stdout, stderr=proc.stderr, rc=proc.returncode)


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP counters per host: {'east': {'ok': 3, 'changed': 0, ...}}."""
        recap: dict[str, dict[str, int]] = {}
        in_recap = False
        for line in self.stdout.splitlines():
            if line.startswith("PLAY RECAP"):
                in_recap = True
                continue
            if in_recap and ":" in line:
                host, _sep, counters = line.partition(":")
                recap[host.strip()] = {
                    key: int(value) for key, value in (pair.split("=") for pair in counters.split())
                }
        return recap

    def total(self, counter: str) -> int:
        return sum(host.get(counter, 0) for host in self.recap().values())


def run_playbook(playbook: str | Path, *extra_args: str, inventory: str | Path | None = None,
                 extra_vars: dict | None = None, env: dict[str, str] | None = None,
                 timeout: float = 600) -> PlaybookRun:
    cmd = [str(Path(sys.executable).with_name("ansible-playbook")), str(playbook)]
    if inventory is not None:
        cmd += ["-i", str(inventory)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += list(extra_args)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(env), timeout=timeout,
                          check=False, cwd=REPO_ROOT)
    return PlaybookRun(rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
