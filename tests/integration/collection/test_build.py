"""The collection builds into a tarball that ansible-galaxy installs and ansible-doc reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.ansible import REPO_ROOT

BIN = Path(sys.executable).parent


def test_build_install_and_document(tmp_path: Path) -> None:
    empty_config = tmp_path / "ansible.cfg"
    empty_config.write_text("[defaults]\n")
    # Only the installed copy may be found: no link to the checkout on the collections path.
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "installed"), "ANSIBLE_CONFIG": str(empty_config)}
    build = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(REPO_ROOT)],
        capture_output=True, text=True, env=env, check=False,
    )
    assert build.returncode == 0, build.stderr
    tarballs = list(tmp_path.glob("cloudphoenix-stack-*.tar.gz"))
    assert len(tarballs) == 1
    install = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "-p", str(tmp_path / "installed"),
         str(tarballs[0])],
        capture_output=True, text=True, env=env, check=False,
    )
    assert install.returncode == 0, install.stderr
    installed = tmp_path / "installed" / "ansible_collections" / "cloudphoenix" / "stack"
    assert (installed / "galaxy.yml").exists() or (installed / "MANIFEST.json").exists()
    assert not (installed / ".venv").exists() and not (installed / ".build").exists()
    modules = sorted(p.stem for p in (installed / "plugins" / "modules").glob("*.py"))
    assert modules, "the tarball carries no modules"
    doc = subprocess.run(
        [str(BIN / "ansible-doc"), f"cloudphoenix.stack.{modules[0]}"],
        capture_output=True, text=True, env=env, check=False,
    )
    assert doc.returncode == 0, doc.stderr
    assert modules[0] in doc.stdout and "EXAMPLES" in doc.stdout
