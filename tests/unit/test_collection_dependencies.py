"""The collection only uses collections it declares: what `ansible-galaxy collection install` brings is enough.

ansible-core ships ansible.builtin (and ansible.legacy); anything else the content names must be a
`dependencies:` entry of galaxy.yml, or users without the full `ansible` bundle hit "couldn't resolve
module/action" or "filter not found" in the middle of a failover. tests/support/fqcn.py finds the FQCNs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.ansible import REPO_ROOT
from tests.support.fqcn import Use, scan_collection

CORE = frozenset({"ansible.builtin", "ansible.legacy"})


def galaxy() -> dict:
    return yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())


@pytest.fixture(scope="module")
def uses() -> list[Use]:
    found = scan_collection(REPO_ROOT)
    assert any(u.collection == "cloudphoenix.stack" and u.how == "module" for u in found), "the scan found nothing"
    return found


def test_every_fqcn_is_core_own_or_declared(uses: list[Use]) -> None:
    """Every module, role, playbook, filter, test, lookup, group or import names ansible-core, us or a dependency."""
    info = galaxy()
    allowed = CORE | {f"{info['namespace']}.{info['name']}"} | set(info.get("dependencies") or {})
    undeclared = [u for u in uses if u.collection not in allowed]
    assert not undeclared, (
        "FQCNs of collections that are neither ansible-core, this collection nor a galaxy.yml dependency "
        f"(allowed: {', '.join(sorted(allowed))}):\n"
        + "\n".join(f"  {u}" for u in undeclared)
    )


def test_every_declared_dependency_is_used(uses: list[Use]) -> None:
    """No galaxy.yml dependency is dead weight that every install downloads for nothing."""
    used = {u.collection for u in uses}
    unused = sorted(set(galaxy().get("dependencies") or {}) - used)
    assert not unused, f"declared in galaxy.yml but used nowhere in plugins/, roles/, playbooks/, molecule/: {unused}"


FORMS = [
    ("roles/r/tasks/main.yml", "- name: T\n  community.general.foo:\n    a: 1\n", "module"),
    ("roles/r/handlers/main.yml",
     "- name: B\n  block:\n    - name: T\n      ansible.builtin.debug:\n  rescue:\n"
     "    - name: R\n      community.general.foo: {}\n", "module"),
    ("roles/r/tasks/main.yml", "- name: T\n  action: community.general.foo a=1\n", "module"),
    ("roles/r/tasks/main.yml", "- name: T\n  local_action:\n    module: community.general.foo\n", "module"),
    ("roles/r/tasks/main.yml", "- name: T\n  ansible.builtin.include_role:\n    name: community.general.foo\n",
     "role"),
    ("roles/r/tasks/main.yml", "- name: T\n  import_role: name=community.general.foo\n", "role"),
    ("roles/r/tasks/main.yml",
     "- name: T\n  module_defaults:\n    group/community.general.foo: {region: x}\n  ansible.builtin.ping:\n",
     "module_defaults group"),
    ("roles/r/tasks/main.yml",
     "- name: T\n  module_defaults:\n    community.general.foo: {}\n  ansible.builtin.ping:\n", "module_defaults"),
    ("roles/r/tasks/main.yml", "- name: T\n  ansible.builtin.debug:\n  with_community.general.foo: [1]\n",
     "lookup via with_"),
    ("roles/r/tasks/main.yml", "- name: T\n  ansible.builtin.ping:\n  connection: community.general.foo\n",
     "connection"),
    ("roles/r/vars/main.yml", "x: \"{{ y | community.general.foo('a') }}\"\n", "filter"),
    ("roles/r/vars/main.yml", "x: >-\n  {{ [1] | map('community.general.foo', 'name')\n     | list }}\n",
     "filter via map()"),
    ("roles/r/defaults/main.yml", "x: \"{{ y | select('community.general.foo') | list }}\"\n", "test via select()"),
    ("roles/r/defaults/main.yml", "x: \"{{ y | rejectattr('a', 'community.general.foo') | list }}\"\n",
     "test via rejectattr()"),
    ("roles/r/tasks/main.yml", "- name: T\n  ansible.builtin.debug:\n  when: y is not community.general.foo\n", "test"),
    ("roles/r/tasks/main.yml", "- name: T\n  ansible.builtin.assert:\n    that:\n      - y is community.general.foo\n",
     "test"),
    ("roles/r/vars/main.yml", "x: \"{{ lookup('community.general.foo', 'k') }}\"\n", "lookup via lookup()"),
    ("roles/r/vars/main.yml", "x: \"{{ query('community.general.foo') }}\"\n", "lookup via query()"),
    ("roles/r/vars/main.yml", "x: \"{{ q(\\\"community.general.foo\\\") }}\"\n", "lookup via q()"),
    ("roles/r/vars/main.yml", "x: \"{{ y | community.general.foo(}}\"\n", "filter, unparsed template"),
    ("roles/r/templates/t.conf.j2", "a={{ b | community.general.foo }}\n", "filter"),
    ("roles/r/meta/main.yml", "collections: [community.general]\ndependencies: []\n", "collections keyword"),
    ("roles/r/meta/main.yml", "dependencies:\n  - role: community.general.foo\n", "role"),
    ("playbooks/p.yml", "- name: P\n  ansible.builtin.import_playbook: community.general.foo\n", "import_playbook"),
    ("playbooks/p.yml", "- name: P\n  hosts: all\n  roles:\n    - community.general.foo\n", "role"),
    ("playbooks/p.yml", "- name: P\n  hosts: all\n  collections: [community.general]\n", "collections keyword"),
    ("playbooks/p.yml",
     "- name: P\n  hosts: all\n  module_defaults:\n    group/community.general.foo: {}\n", "module_defaults group"),
    ("molecule/s/converge.yml",
     "- name: P\n  hosts: all\n  post_tasks:\n    - name: T\n      community.general.foo:\n", "module"),
    ("molecule/s/molecule.yml", "driver:\n  name: community.general.foo\n", "molecule driver"),
    ("molecule/s/molecule.yml", "ansible:\n  cfg:\n    defaults:\n      callbacks_enabled: profile_tasks, "
     "community.general.foo\n", "molecule cfg callbacks_enabled"),
    ("meta/runtime.yml", "action_groups:\n  g:\n    - mod\n    - community.general.foo\n", "action_groups"),
    ("meta/runtime.yml", "action_groups:\n  g:\n    - metadata:\n        extend_group: [community.general.foo]\n",
     "action_groups extend_group"),
    ("plugins/modules/m.py", "from ansible_collections.community.general.foo import x\n", "python import"),
    ("plugins/filter/f.py", "import ansible_collections.community.general.foo as f\n", "python import"),
    ("plugins/modules/m.py",
     'DOCUMENTATION = """\nmodule: m\nextends_documentation_fragment:\n  - community.general.foo\n"""\n',
     "documentation fragment"),
]


def scan_one(root: Path, rel: str, text: str) -> list[Use]:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return scan_collection(root)


@pytest.mark.parametrize(("rel", "text", "how"), FORMS, ids=[f"{i}-{how}" for i, (_r, _t, how) in enumerate(FORMS)])
def test_scanner_finds_each_form(tmp_path: Path, rel: str, text: str, how: str) -> None:
    """The scanner reports each way content can name community.general, with the file and the kind of use."""
    found = [u for u in scan_one(tmp_path, rel, text) if u.collection == "community.general"]
    assert [(u.path, u.how) for u in found] == [(rel, how)], found
    assert found[0].lines, "no line hint"


NOT_USES = [
    ("plugins/modules/m.py", "import dns.rdatatype\nq = dns.rdatatype.A\nfrom ansible.module_utils.basic import x\n"),
    ("plugins/modules/m.py", 'DOCUMENTATION = """\nmodule: m\ndescription: Uses M(community.general.foo).\n"""\n'),
    ("roles/r/vars/main.yml", "labels:\n  app.kubernetes.io/name: x\n  community.general.foo: y\nurl: docs.rs\n"),
    ("roles/r/tasks/main.yml",
     "- name: Runs community.general.foo | is community.general.bar\n  ansible.builtin.debug:\n"
     "    msg: \"see lookup('community.general.foo') and {{ x | map(attribute='community.general.foo') }}\"\n"),
    ("roles/r/meta/argument_specs.yml",
     "argument_specs:\n  main:\n    description: Applies with C(community.general.foo), is community.general.x.\n"),
    ("playbooks/p.yml", "- name: P\n  ansible.builtin.import_playbook: community.general.yml\n"),
    ("roles/r/files/f.yml", "- community.general.foo: \"{{ x | community.general.foo }}\"\n"),
    ("README.md", "{{ x | community.general.foo }}\n"),
]


@pytest.mark.parametrize(("rel", "text"), NOT_USES, ids=[f"{i}" for i in range(len(NOT_USES))])
def test_scanner_ignores_what_ansible_does_not_resolve(tmp_path: Path, rel: str, text: str) -> None:
    """Python dotted names, data keys, prose, doc references and unscanned files are not reported."""
    assert [u for u in scan_one(tmp_path, rel, text) if u.collection not in CORE] == []
