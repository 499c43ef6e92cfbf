"""The built collection installs and works where only ansible-core and the declared dependencies are.

Users install `cloudphoenix.stack` with `ansible-galaxy collection install`, often on plain ansible-core,
not the `ansible` bundle. So everything here runs with a Python holding ansible-core and its own
requirements only (a venv made from the base Python, pinned like requirements-dev.txt, cached in
.build/core-only-venv), with ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=False, and a collections path holding
the tarball installed with --no-deps next to exactly the galaxy.yml `dependencies` (copied from the
bundle in the development venv). A collection used but not declared is missing there.

Runtime: 5-10 s with the venv cached; the first run (or a change of requirements-dev.txt) adds 5 s
to make the venv from pip's cache, more when pip downloads ansible-core and its requirements.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest
import yaml
from ansible.galaxy.dependency_resolution.versioning import meets_requirements

from tests.support.ansible import REPO_ROOT

REQUIREMENTS = REPO_ROOT / "requirements-dev.txt"
CORE_VENV = REPO_ROOT / ".build" / "core-only-venv"
# The `ansible` bundle of the development venv: where the declared dependencies are copied from.
BUNDLE = Path(sysconfig.get_paths()["purelib"]) / "ansible_collections"
GALAXY = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())
OWN = f"{GALAXY['namespace']}.{GALAXY['name']}"
DEPENDENCIES: dict[str, str] = GALAXY.get("dependencies") or {}
MODULES = sorted(p.stem for p in (REPO_ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
ROLES = sorted(p.name for p in (REPO_ROOT / "roles").iterdir() if p.is_dir())
PLAYBOOKS = sorted(p.stem for p in (REPO_ROOT / "playbooks").glob("*.yml"))


def run(cmd: list[str | Path], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout, check=False)


def core_only_python() -> Path:
    """A venv with ansible-core==<requirements-dev.txt pin> and its requirements only; made again when pins change."""
    pin = re.search(r"^ansible-core==(\S+)$", REQUIREMENTS.read_text(), re.MULTILINE)
    assert pin, "requirements-dev.txt pins no ansible-core"
    base = Path(getattr(sys, "_base_executable", "") or sys.executable)
    pins = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    key = f"{base} {sys.version_info[:3]} ansible-core=={pin.group(1)} requirements-dev.txt sha256 {pins}\n"
    python, stamp = CORE_VENV / "bin" / "python", CORE_VENV / ".pins"
    CORE_VENV.parent.mkdir(parents=True, exist_ok=True)
    with (CORE_VENV.parent / "core-only-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.is_file() and stamp.read_text() == key:
            return python
        shutil.rmtree(CORE_VENV, ignore_errors=True)
        for cmd in ([base, "-m", "venv", CORE_VENV],
                    [python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                     f"ansible-core=={pin.group(1)}", "-c", REQUIREMENTS]):
            made = run(cmd, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, cwd=REPO_ROOT, timeout=600)
            assert made.returncode == 0, f"{cmd}: {made.stdout}{made.stderr}"
        stamp.write_text(key)  # last: an interrupted build is made again
    return python


@pytest.fixture(scope="module")
def core_bin() -> Path:
    return core_only_python().parent


def core_env(tmp_path: Path, core_bin: Path) -> dict[str, str]:
    """No ANSIBLE_* or PYTHON* of the caller; only the test's collections path, nothing from sys.path."""
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PYTHON"))}
    env.update(
        PATH=f"{core_bin}{os.pathsep}{env.get('PATH', '')}",
        ANSIBLE_CONFIG=str(config),
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False",
        ANSIBLE_NOCOLOR="1",
    )
    return env


# What the core-only Python has installed, and whether any `ansible_collections` package is importable.
PROBE = """
import importlib.metadata, importlib.util, json
print(json.dumps([{d.metadata["Name"].lower(): d.version for d in importlib.metadata.distributions()},
                  importlib.util.find_spec("ansible_collections") is not None]))
"""


def test_core_only_python_has_no_bundle(core_bin: Path, tmp_path: Path) -> None:
    """The Python the next test runs on has ansible-core, at the pinned version, and not the `ansible` bundle."""
    listed = run([core_bin / "python", "-c", PROBE], env=core_env(tmp_path, core_bin), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    installed, has_collections = json.loads(listed.stdout)
    assert f"ansible-core=={installed.get('ansible-core')}" in REQUIREMENTS.read_text().splitlines()
    assert "ansible" not in installed and not has_collections, sorted(installed)


def test_build_install_and_run_with_core_and_declared_dependencies(core_bin: Path, tmp_path: Path) -> None:
    """Built, installed with --no-deps beside the declared dependencies only: every module and role documents,
    every playbook (failover first) and every role task file passes --syntax-check (each module resolves), and
    the tarball carries a LICENSE."""
    env = core_env(tmp_path, core_bin)
    build = run([core_bin / "ansible-galaxy", "collection", "build", "--output-path", tmp_path, REPO_ROOT],
                env=env, cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    tarballs = list(tmp_path.glob(f"{GALAXY['namespace']}-{GALAXY['name']}-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    with tarfile.open(tarballs[0]) as tar:
        members = set(tar.getnames())
        manifest = json.load(tar.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    assert "LICENSE" in members, "the tarball carries no LICENSE file"
    assert not {m for m in members if m.split("/")[0] in (".venv", ".build", ".git", ".ci", "ee")}
    assert manifest["collection_info"]["dependencies"] == DEPENDENCIES

    install = run([core_bin / "ansible-galaxy", "collection", "install", "--no-deps", "-p", tmp_path / "collections",
                   tarballs[0]], env=env, cwd=tmp_path)
    assert install.returncode == 0, install.stderr
    root = tmp_path / "collections" / "ansible_collections"
    installed = root / GALAXY["namespace"] / GALAXY["name"]
    assert (installed / "MANIFEST.json").is_file() and (installed / "LICENSE").is_file()
    assert sorted(p.stem for p in (installed / "plugins" / "modules").glob("*.py") if p.stem != "__init__") == MODULES

    for fqcn, wanted in DEPENDENCIES.items():
        source = BUNDLE.joinpath(*fqcn.split("."))
        assert source.is_dir(), f"{fqcn} is not in the ansible bundle of {sys.prefix}"
        info = json.loads((source / "MANIFEST.json").read_text())["collection_info"]
        assert meets_requirements(info["version"], wanted), f"{fqcn} {info['version']} does not meet {wanted}"
        assert set(info["dependencies"]) <= set(DEPENDENCIES), f"{fqcn} needs {info['dependencies']}, not all declared"
        shutil.copytree(source, root.joinpath(*fqcn.split(".")), ignore=shutil.ignore_patterns("__pycache__"),
                        symlinks=True)

    listed = run([core_bin / "ansible-galaxy", "collection", "list", "--format", "json"], env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    visible = {name for by_name in json.loads(listed.stdout).values() for name in by_name
               if not name.startswith("ansible.")}  # ansible._protomatter ships inside ansible-core
    assert visible == {OWN, *DEPENDENCIES}, f"collections Ansible sees: {sorted(visible)}"

    docs = run([core_bin / "ansible-doc", "--json", *(f"{OWN}.{m}" for m in MODULES)], env=env, cwd=tmp_path)
    assert docs.returncode == 0, docs.stderr
    documented = json.loads(docs.stdout)
    for module in MODULES:
        entry = documented.get(f"{OWN}.{module}") or {}
        assert entry.get("doc", {}).get("short_description"), f"{module}: no documentation\n{docs.stderr}"
        assert f"{OWN}.{module}" in (entry.get("examples") or ""), f"{module}: no EXAMPLES using its FQCN"
    text = run([core_bin / "ansible-doc", *(f"{OWN}.{m}" for m in MODULES)], env=env, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert [m for m in MODULES if f"MODULE {OWN}.{m}" not in text.stdout] == [], text.stdout[-2000:]

    roles = run([core_bin / "ansible-doc", "-t", "role", "--json", *(f"{OWN}.{r}" for r in ROLES)],
                env=env, cwd=tmp_path)
    assert roles.returncode == 0, roles.stderr
    specs = json.loads(roles.stdout)
    for role in ROLES:
        main = (specs.get(f"{OWN}.{role}") or {}).get("entry_points", {}).get("main") or {}
        assert main.get("short_description") and main.get("options"), f"{role}: no documented main entry point"
    text = run([core_bin / "ansible-doc", "-t", "role", *(f"{OWN}.{r}" for r in ROLES)], env=env, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    sections = re.split(r"^> ROLE: \*?([\w.]+)\*? ", text.stdout, flags=re.MULTILINE)  # `*name*` without color
    rendered = dict(zip(sections[1::2], sections[2::2], strict=True))
    for role in ROLES:
        assert "ENTRY POINT: *main*" in rendered.get(f"{OWN}.{role}", ""), f"{role}: not rendered\n{text.stdout}"

    assert "failover" in PLAYBOOKS
    syntax = run([core_bin / "ansible-playbook", "-i", "localhost,", "--syntax-check",
                  *(f"{OWN}.{p}" for p in ["failover", *(p for p in PLAYBOOKS if p != "failover")])],
                 env=env, cwd=tmp_path)
    assert syntax.returncode == 0, f"{syntax.stdout}{syntax.stderr}"
    assert "ERROR" not in syntax.stderr, syntax.stderr

    # --syntax-check skips include_tasks files (failover's platform_kubernetes.yml, say): import every task
    # file of every installed role statically, so each task's module must resolve here.
    imports = [{"name": f"{role.name} {tasks.name}",
                "ansible.builtin.import_role": {"name": f"{OWN}.{role.name}", "tasks_from": tasks.stem}}
               for role in sorted((installed / "roles").iterdir()) for tasks in sorted(role.glob("tasks/*.yml"))]
    assert len(imports) > len(ROLES)
    playbook = tmp_path / "play" / "every_task_file.yml"
    playbook.parent.mkdir()
    playbook.write_text(yaml.safe_dump([{"name": "Every task file", "hosts": "localhost", "gather_facts": False,
                                         "tasks": imports}], sort_keys=False))
    every = run([core_bin / "ansible-playbook", "-i", "localhost,", "--syntax-check", playbook], env=env, cwd=tmp_path)
    assert every.returncode == 0, f"{every.stdout}{every.stderr}"
