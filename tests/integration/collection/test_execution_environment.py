"""The execution environment: `ansible-builder create` writes its build context offline, and the image would get
this collection's requirements from meta/execution-environment.yml (not the lab's bindep.txt or the full lock).

No image is built (no registry, no Galaxy here). What a build does with the context is replayed instead: the
galaxy stage's `ansible-galaxy collection install -r requirements.yml` in `_build/` (offline, the dependency
collections taken from the venv), then the builder stage's `introspect` with the context's user and exclude files,
then bindep on the merged list as a UBI 9 and a Debian 12 base would evaluate it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ansible.galaxy.dependency_resolution.versioning import meets_requirements
from bindep import depends as bindep_depends
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.ansible import REPO_ROOT

BIN = Path(sys.executable).parent
EE_FILE = REPO_ROOT / "ee" / "execution-environment.yml"
ME = "cloudphoenix.stack"
# A dead proxy: anything that tries the network fails instead of quietly downloading.
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": "",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
# (distro.id, distro.version, distro.codename, distro.name) of the bases bindep is evaluated for.
UBI9 = ("rhel", "9.6", "plow", "Red Hat Enterprise Linux")
DEBIAN12 = ("debian", "12", "bookworm", "Debian GNU/Linux")


@dataclass
class Workspace:
    root: Path  # the EE definition and what it refers to, laid out as in the checkout
    context: Path  # what `ansible-builder create` wrote
    create_output: str

    def listing(self) -> str:
        """The context's files, for failure messages."""
        files = sorted(str(p.relative_to(self.context)) for p in self.context.rglob("*") if p.is_file())
        return "build context files:\n  " + "\n  ".join(files) + "\nansible-builder create said:\n" + self.create_output


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120)


def requirement_lines(path: Path) -> list[str]:
    """Requirement lines of a pip or bindep file, comments and blanks dropped."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def top_level_pins() -> dict[str, Version]:
    """requirements.in, read on its own: canonical name -> pinned version."""
    pins = {}
    for line in requirement_lines(REPO_ROOT / "requirements.in"):
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"requirements.in pins exactly: {line}"
        pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def dev_pin(name: str) -> str:
    for line in requirement_lines(REPO_ROOT / "requirements-dev.txt"):
        req = Requirement(line)
        if canonicalize_name(req.name) == canonicalize_name(name):
            return str(req)
    raise AssertionError(f"{name} is not pinned in requirements-dev.txt")


def galaxy_info() -> dict:
    return yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())


def tarball_name() -> str:
    """What `ansible-galaxy collection build` names this collection's tarball."""
    info = galaxy_info()
    return f"{info['namespace']}-{info['name']}-{info['version']}.tar.gz"


def venv_collections() -> Path:
    """The ansible_collections directory of the `ansible` package the tests run with."""
    spec = importlib.util.find_spec("ansible_collections")
    assert spec is not None and spec.submodule_search_locations
    for location in spec.submodule_search_locations:
        if (Path(location) / "amazon" / "aws" / "MANIFEST.json").exists():
            return Path(location)
    raise AssertionError(f"no amazon.aws in {list(spec.submodule_search_locations)}")


def installed_version(root: Path, fqcn: str) -> str:
    manifest = json.loads((root / Path(*fqcn.split(".")) / "MANIFEST.json").read_text())
    return manifest["collection_info"]["version"]


def member_bytes(archive: tarfile.TarFile, name: str) -> bytes:
    member = archive.extractfile(name)
    assert member is not None, f"{name} is not a file in the tarball"
    return member.read()


def annotated(path: Path) -> dict[str, list[str]]:
    """A file introspect wrote ("<requirement>  # from collection <name>" lines) -> {collection: [requirement]}."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            requirement, _, source = line.partition("  # from collection ")
            found.setdefault(source.strip(), []).append(requirement.strip())
    return found


def bindep_packages(bindep_file: Path, base: tuple[str, str, str, str], monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The packages `bindep -l newline` (the assemble script) lists for this file on the given base."""
    distro_id, version, codename, name = base
    with monkeypatch.context() as patch:
        patch.setattr(bindep_depends.distro, "id", lambda: distro_id)
        patch.setattr(bindep_depends.distro, "version", lambda *_a, **_k: version)
        patch.setattr(bindep_depends.distro, "codename", lambda: codename)
        patch.setattr(bindep_depends.distro, "name", lambda *_a, **_k: name)
        deps = bindep_depends.Depends(bindep_file.read_text())
        return set(deps.list_all_packages(deps.active_rules(["default", *deps.platform_profiles()])))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """ee/ and requirements.in copied as in the checkout, the collection tarball in .build/ee, then `create`."""
    root = tmp_path_factory.mktemp("ee")
    shutil.copytree(EE_FILE.parent, root / "ee")
    shutil.copy2(REPO_ROOT / "requirements.in", root / "requirements.in")
    empty_config = root / "ansible.cfg"
    empty_config.write_text("[defaults]\n")
    env = {**os.environ, **OFFLINE, "ANSIBLE_CONFIG": str(empty_config), "ANSIBLE_HOME": str(root / "ansible-home")}
    build = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(root / ".build" / "ee"),
                 str(REPO_ROOT)], REPO_ROOT, env)
    assert build.returncode == 0, build.stdout + build.stderr
    create = run([str(BIN / "ansible-builder"), "create", "-f", "ee/execution-environment.yml", "-c", "context",
                  "--output-filename", "Containerfile", "-v3"], root, env)
    assert create.returncode == 0, create.stdout + create.stderr
    return Workspace(root=root, context=root / "context", create_output=create.stdout + create.stderr)


@pytest.fixture(scope="module")
def installed(workspace: Workspace) -> Path:
    """The galaxy stage replayed: install _build/requirements.yml from _build/, as the Containerfile does."""
    collections = workspace.root / "installed"
    source = venv_collections()
    requirements = yaml.safe_load((workspace.context / "_build" / "requirements.yml").read_text())["collections"]
    for fqcn in (entry["name"] for entry in requirements if entry.get("type") != "file"):
        link = collections / "ansible_collections" / Path(*fqcn.split("."))
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source / Path(*fqcn.split(".")))
    env = {**os.environ, **OFFLINE, "ANSIBLE_CONFIG": str(workspace.root / "ansible.cfg"),
           "ANSIBLE_HOME": str(workspace.root / "ansible-home"), "ANSIBLE_COLLECTIONS_PATH": str(collections)}
    install = run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-r", "requirements.yml",
                   "-p", str(collections)], workspace.context / "_build", env)
    assert install.returncode == 0, install.stdout + install.stderr + workspace.listing()
    return collections


@dataclass
class Introspection:
    python: dict[str, list[str]]
    system: dict[str, list[str]]
    bindep_file: Path
    output: str


@pytest.fixture(scope="module")
def introspection(workspace: Workspace, installed: Path) -> Introspection:
    """The builder stage's introspect, with the user and exclude files of the context."""
    build_dir = workspace.context / "_build"
    out = workspace.root / "introspected"
    argv = [str(BIN / "ansible-builder"), "introspect", str(installed), "--write-pip", str(out / "requirements.txt"),
            "--write-bindep", str(out / "bindep.txt"), "--user-pip", "requirements.txt"]
    for option, name in (("--user-bindep", "bindep.txt"), ("--exclude-pip-reqs", "exclude-requirements.txt"),
                         ("--exclude-bindep-reqs", "exclude-bindep.txt")):
        if (build_dir / name).exists():
            argv += [option, name]
    result = run(argv, build_dir, dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
    return Introspection(python=annotated(out / "requirements.txt"), system=annotated(out / "bindep.txt"),
                        bindep_file=out / "bindep.txt", output=result.stdout)


def test_create_writes_the_containerfile_for_the_base_image_and_the_collections(workspace: Workspace) -> None:
    definition = yaml.safe_load(EE_FILE.read_text())
    containerfile = workspace.context / "Containerfile"
    assert containerfile.is_file(), workspace.listing()
    text = containerfile.read_text()
    base = definition["images"]["base_image"]["name"]
    assert f'ARG EE_BASE_IMAGE="{base}"' in text and "FROM $EE_BASE_IMAGE AS base" in text, workspace.listing()
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="(.*)"$', text, re.MULTILINE)
    assert refs, workspace.listing()
    assert dev_pin("ansible-core") in refs.group(1).split(), refs.group(1)
    assert any(canonicalize_name(Requirement(r).name) == "ansible-runner" for r in refs.group(1).split()), refs.group(1)
    assert "COPY _build /build" in text, workspace.listing()
    assert re.search(r"^RUN .*ansible-galaxy collection install .*-r requirements\.yml", text, re.MULTILINE), text
    assert "introspect.py introspect --user-pip=requirements.txt" in text, text


def test_create_copies_the_tarball_with_this_collections_ee_metadata(workspace: Workspace) -> None:
    tarball = workspace.context / "_build" / "collections" / tarball_name()
    assert tarball.is_file(), workspace.listing()
    with tarfile.open(tarball) as archive:
        members = set(archive.getnames())
        assert "meta/execution-environment.yml" in members, sorted(members)
        meta = yaml.safe_load(member_bytes(archive, "meta/execution-environment.yml"))
        for path in meta["dependencies"].values():
            assert path in members, f"{path} (meta/execution-environment.yml) is not in the tarball"
            assert member_bytes(archive, path) == (REPO_ROOT / path).read_bytes(), f"{path} differs from the checkout"


def test_create_copies_the_top_level_pins_and_the_galaxy_requirements(workspace: Workspace) -> None:
    build_dir = workspace.context / "_build"
    assert (build_dir / "requirements.txt").is_file(), workspace.listing()
    copied = {canonicalize_name(Requirement(line).name): Requirement(line)
              for line in requirement_lines(build_dir / "requirements.txt")}
    assert {name: str(req.specifier) for name, req in copied.items()} == {
        name: f"=={version}" for name, version in top_level_pins().items()}

    galaxy = yaml.safe_load((build_dir / "requirements.yml").read_text())["collections"]
    info = galaxy_info()
    files = [entry for entry in galaxy if entry.get("type") == "file"]
    assert [Path(entry["name"]).name for entry in files] == [tarball_name()], galaxy
    # ansible-galaxy runs in /build (the context's _build): the path must resolve from there
    assert (build_dir / files[0]["name"]).is_file(), workspace.listing()
    # exactly galaxy.yml's dependencies (tests/unit/test_collection_dependencies.py: they cover every FQCN used)
    pinned = {entry["name"]: str(entry["version"]) for entry in galaxy if entry.get("type") != "file"}
    declared = info.get("dependencies") or {}
    assert sorted(pinned) == sorted(declared), galaxy
    source = venv_collections()
    for fqcn, wanted in declared.items():
        assert meets_requirements(pinned[fqcn], wanted), f"{fqcn} {pinned[fqcn]} does not meet galaxy.yml's {wanted}"
    for fqcn, version in pinned.items():
        assert version == installed_version(source, fqcn), f"{fqcn}: the tests run with another version"


def test_galaxy_stage_installs_the_tarball_offline(installed: Path) -> None:
    assert installed_version(installed / "ansible_collections", ME) == galaxy_info()["version"]


def test_introspection_reports_the_collections_python_requirements(introspection: Introspection) -> None:
    """Lower bounds of requirements.in's top-level names (the tested pins meet them), no transitive packages."""
    pins = top_level_pins()
    mine = [Requirement(line) for line in introspection.python.get(ME, [])]
    assert sorted(canonicalize_name(r.name) for r in mine) == sorted(pins), introspection.output
    for req in mine:
        assert not any(spec.operator in ("==", "===") for spec in req.specifier), f"exact pin in the metadata: {req}"
        assert req.specifier.contains(pins[canonicalize_name(req.name)]), f"{req} excludes the tested version"
    # what pip gets in the EE: every line about a top-level name (any collection's, and the user pins) allows the pin
    for lines in introspection.python.values():
        for line in lines:
            req = Requirement(line)
            if canonicalize_name(req.name) in pins:
                assert req.specifier.contains(pins[canonicalize_name(req.name)]), f"{req} excludes the tested pin"
    everything = {canonicalize_name(Requirement(line).name) for lines in introspection.python.values()
                  for line in lines}
    assert "pytest-mock" not in everything, introspection.output


def test_introspection_reports_the_collections_system_requirements(introspection: Introspection,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """meta/ee-bindep.txt, not the lab's bindep.txt; on the base images only the SSH client is installed."""
    meta = yaml.safe_load((REPO_ROOT / "meta" / "execution-environment.yml").read_text())
    declared = requirement_lines(REPO_ROOT / meta["dependencies"]["system"])
    assert introspection.system.get(ME) == declared, introspection.output
    assert any("platform:rpm" in line for line in declared) and any("platform:dpkg" in line for line in declared)
    # the SSH client is the one package both need (the controller reaches hosts; the lab's tests cut one off)
    lab_packages = {line.split()[0] for line in requirement_lines(REPO_ROOT / "bindep.txt")} - {"openssh-client"}
    mine = {line.split()[0] for line in introspection.system.get(ME, [])}
    assert not lab_packages & mine, f"the lab's packages in the EE: {sorted(lab_packages & mine)}"
    assert bindep_packages(introspection.bindep_file, UBI9, monkeypatch) == {"openssh-clients"}
    assert bindep_packages(introspection.bindep_file, DEBIAN12, monkeypatch) == {"openssh-client"}
