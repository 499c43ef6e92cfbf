"""Every FQCN a collection's content makes Ansible resolve, found where Ansible resolves it.

`scan_collection(root)` reads plugins/, roles/, playbooks/, molecule/ and meta/runtime.yml of a
collection checkout and returns one `Use` per (file, FQCN, kind of use):

* YAML is loaded (not grepped) and walked as Ansible reads it: plays (`import_playbook`, `roles:`,
  `collections:`, `module_defaults`, pre_tasks/tasks/post_tasks/handlers), tasks (the action key, also
  inside block/rescue/always, `action:`/`local_action:`, `include_role`/`import_role` `name:`,
  `with_<lookup>`, `module_defaults` incl. `group/...`, `connection`/`become_method`/`strategy`),
  role meta (`collections:`, role `dependencies:`), meta/runtime.yml (action_groups, redirects) and
  molecule.yml (driver, playbooks, plugin settings in `cfg`/`env`).
* Jinja (every `{{ }}`/`{% %}` in any YAML string, bare conditionals such as `when:`/`that:`, *.j2
  templates) is parsed with Jinja's own parser: dotted filter and test names, the filter/test named
  in `map()`/`select()`/`reject()`/`selectattr()`/`rejectattr()`, and `lookup()`/`query()`/`q()`.
  A string Jinja cannot parse is searched with regexes for the same forms.
* Python under plugins/ is parsed: `ansible_collections.<ns>.<coll>` imports and the
  `extends_documentation_fragment` of DOCUMENTATION.

Dotted names that Ansible does not resolve as plugins (`dns.rdatatype.A` in Python, `app.kubernetes.io`
keys in data, M(ns.coll.x) references in documentation, prose) are not uses.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import nodes

_NAME = r"[a-z_][a-z0-9_]*"
FQCN_PATTERN = rf"{_NAME}\.{_NAME}(?:\.[A-Za-z_][A-Za-z0-9_]*)+"
FQCN = re.compile(FQCN_PATTERN)

# Keys whose string value is a bare Jinja expression (no braces).
BARE_JINJA_KEYS = frozenset({"when", "changed_when", "failed_when", "until", "that", "var"})
# Task/play keywords whose value names a plugin.
PLUGIN_KEYWORDS = frozenset({"connection", "become_method", "strategy"})
TASK_LISTS = ("pre_tasks", "tasks", "post_tasks", "handlers")
ROLE_ACTIONS = frozenset({"include_role", "import_role"})
# Jinja filters whose string argument names another filter (map) or a test (the others), by position.
PLUGIN_ARG = {"map": (0, "filter"), "select": (0, "test"), "reject": (0, "test"),
              "selectattr": (1, "test"), "rejectattr": (1, "test")}
LOOKUP_CALLS = frozenset({"lookup", "query", "q"})
# ansible.cfg settings (molecule.yml `cfg`, or ANSIBLE_<KEY> in its `env`) whose value names plugins.
CFG_PLUGIN_KEYS = frozenset({"stdout_callback", "callbacks_enabled", "callback_whitelist", "strategy",
                             "enable_plugins", "become_method"})

_JINJA = jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])  # noqa: S701 (parse only)
_STR = r"""['"]"""
_FALLBACK = [
    (re.compile(rf"\|\s*({FQCN_PATTERN})"), "filter"),
    (re.compile(rf"\bis\s+(?:not\s+)?({FQCN_PATTERN})"), "test"),
    (re.compile(rf"\bmap\(\s*{_STR}({FQCN_PATTERN}){_STR}"), "filter via map()"),
    (re.compile(rf"\b(?:select|reject)\(\s*{_STR}({FQCN_PATTERN}){_STR}"), "test via select()"),
    (re.compile(rf"\b(?:selectattr|rejectattr)\(\s*{_STR}[^'\"]*{_STR}\s*,\s*{_STR}({FQCN_PATTERN}){_STR}"),
     "test via selectattr()"),
    (re.compile(rf"\b(?:lookup|query|q)\(\s*{_STR}({FQCN_PATTERN}){_STR}"), "lookup"),
]


@dataclass(frozen=True, order=True)
class Use:
    """One FQCN used by one file; `lines` are where its text appears (a hint for people)."""

    path: str
    fqcn: str
    how: str
    lines: tuple[int, ...] = ()

    @property
    def collection(self) -> str:
        return ".".join(self.fqcn.split(".")[:2])

    def __str__(self) -> str:
        where = f"{self.path}:{','.join(map(str, self.lines))}" if self.lines else self.path
        return f"{where}: {self.fqcn} ({self.how})"


def is_fqcn(value: Any) -> bool:
    return isinstance(value, str) and FQCN.fullmatch(value) is not None


# --- Jinja ---------------------------------------------------------------------------------------

def _const_str(args: list[nodes.Expr], index: int) -> str | None:
    if len(args) > index and isinstance(args[index], nodes.Const) and isinstance(args[index].value, str):
        return args[index].value
    return None


def jinja_uses(text: str, *, bare: bool = False) -> set[tuple[str, str]]:
    """(fqcn, how) for each plugin a template (or a bare expression, `bare=True`) names."""
    if not bare and "{{" not in text and "{%" not in text:
        return set()
    source = text if "{{" in text or "{%" in text else "{{ " + text + " }}"
    try:
        with warnings.catch_warnings():  # Jinja's "invalid escape sequence" for a '\w' in a regex literal
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = _JINJA.parse(source)
    except jinja2.TemplateSyntaxError:
        return {(m.group(1), f"{how}, unparsed template") for rx, how in _FALLBACK for m in rx.finditer(source)}
    found: set[tuple[str, str]] = set()
    for node in tree.find_all((nodes.Filter, nodes.Test, nodes.Call)):
        if isinstance(node, nodes.Call):
            name = _const_str(node.args, 0)
            if isinstance(node.node, nodes.Name) and node.node.name in LOOKUP_CALLS and is_fqcn(name):
                found.add((name, f"lookup via {node.node.name}()"))
            continue
        kind = "filter" if isinstance(node, nodes.Filter) else "test"
        if is_fqcn(node.name):
            found.add((node.name, kind))
        short = node.name.rsplit(".", 1)[-1]
        if kind == "filter" and short in PLUGIN_ARG:
            index, arg_kind = PLUGIN_ARG[short]
            name = _const_str(node.args, index)
            if is_fqcn(name) and not any(kw.key == "attribute" for kw in node.kwargs):
                found.add((name, f"{arg_kind} via {short}()"))
    return found


def _strings(data: Any, key: str | None = None) -> Iterator[tuple[str | None, str]]:
    """Every string value in loaded YAML, with the mapping key it sits under."""
    if isinstance(data, str):
        yield key, data
    elif isinstance(data, dict):
        for k, v in data.items():
            yield from _strings(v, k if isinstance(k, str) else key)
    elif isinstance(data, list):
        for item in data:
            yield from _strings(item, key)


def _yaml_jinja_uses(data: Any) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for key, text in _strings(data):
        found |= jinja_uses(text, bare=key in BARE_JINJA_KEYS)
    return found


# --- plays, tasks, roles -------------------------------------------------------------------------

def _role_use(entry: Any) -> Iterator[tuple[str, str]]:
    name = entry.get("role", entry.get("name")) if isinstance(entry, dict) else entry
    if is_fqcn(name):
        yield name, "role"


def _module_defaults_uses(defaults: Any) -> Iterator[tuple[str, str]]:
    for mapping in defaults if isinstance(defaults, list) else [defaults]:
        if not isinstance(mapping, dict):
            continue
        for key in mapping:
            if isinstance(key, str) and key.startswith("group/") and is_fqcn(key[len("group/"):]):
                yield key[len("group/"):], "module_defaults group"
            elif is_fqcn(key):
                yield key, "module_defaults"


def _keyword_uses(mapping: dict) -> Iterator[tuple[str, str]]:
    for keyword in PLUGIN_KEYWORDS:
        if is_fqcn(mapping.get(keyword)):
            yield mapping[keyword], keyword
    yield from _module_defaults_uses(mapping.get("module_defaults"))


def _is_core_or_short(action: str, short: str) -> bool:
    return action == short or action in (f"ansible.builtin.{short}", f"ansible.legacy.{short}")


def task_uses(task: Any) -> Iterator[tuple[str, str]]:
    """FQCNs one task (or block, recursively) makes Ansible resolve."""
    if not isinstance(task, dict):
        return
    yield from _keyword_uses(task)
    for key, value in task.items():
        if not isinstance(key, str):
            continue
        if key in ("block", "rescue", "always") and isinstance(value, list):
            for inner in value:
                yield from task_uses(inner)
        elif key in ("action", "local_action"):
            module = value.get("module") if isinstance(value, dict) else (str(value).split() or [None])[0]
            if is_fqcn(module):
                yield module, "module"
        elif key.startswith("with_") and is_fqcn(key[len("with_"):]):
            yield key[len("with_"):], "lookup via with_"
        elif is_fqcn(key):
            yield key, "module"
        if any(_is_core_or_short(key, short) for short in ROLE_ACTIONS):
            if isinstance(value, dict):
                yield from _role_use(value.get("name"))
            elif isinstance(value, str) and (m := re.search(r"\bname=(\S+)", value)):
                yield from _role_use(m.group(1))


def play_uses(play: Any) -> Iterator[tuple[str, str]]:
    """FQCNs one play (or `import_playbook` entry) makes Ansible resolve."""
    if not isinstance(play, dict):
        return
    for key, value in play.items():
        is_import = isinstance(key, str) and _is_core_or_short(key, "import_playbook")
        if is_import and is_fqcn(value) and not value.endswith((".yml", ".yaml")):  # else a playbook file
            yield value, "import_playbook"
    for entry in play.get("roles") or []:
        yield from _role_use(entry)
    for name in play.get("collections") or []:
        if isinstance(name, str) and re.fullmatch(rf"{_NAME}\.{_NAME}", name):
            yield name + ".*", "collections keyword"
    yield from _keyword_uses(play)
    for section in TASK_LISTS:
        for task in play.get(section) or []:
            yield from task_uses(task)


def _is_play(item: Any) -> bool:
    return isinstance(item, dict) and ("hosts" in item or any(
        isinstance(k, str) and _is_core_or_short(k, "import_playbook") for k in item))


def playbook_or_tasks_uses(documents: list[Any]) -> Iterator[tuple[str, str]]:
    for doc in documents:
        for item in doc if isinstance(doc, list) else []:
            yield from (play_uses(item) if _is_play(item) else task_uses(item))


def role_meta_uses(documents: list[Any]) -> Iterator[tuple[str, str]]:
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        for name in doc.get("collections") or []:
            if isinstance(name, str) and re.fullmatch(rf"{_NAME}\.{_NAME}", name):
                yield name + ".*", "collections keyword"
        for entry in doc.get("dependencies") or []:
            yield from _role_use(entry)


def runtime_uses(documents: list[Any]) -> Iterator[tuple[str, str]]:
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        for members in (doc.get("action_groups") or {}).values():
            for member in members or []:
                if is_fqcn(member):
                    yield member, "action_groups"
                elif isinstance(member, dict):
                    for group in (member.get("metadata") or {}).get("extend_group") or []:
                        if is_fqcn(group):
                            yield group, "action_groups extend_group"
        for plugins in (doc.get("plugin_routing") or {}).values():
            for routing in (plugins or {}).values():
                if isinstance(routing, dict) and is_fqcn(routing.get("redirect")):
                    yield routing["redirect"], "plugin_routing redirect"


def _plugin_settings(value: Any) -> Iterator[str]:
    for part in value if isinstance(value, list) else str(value).split(","):
        if is_fqcn(str(part).strip()):
            yield str(part).strip()


def molecule_uses(documents: list[Any]) -> Iterator[tuple[str, str]]:
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        if is_fqcn((doc.get("driver") or {}).get("name")):
            yield doc["driver"]["name"], "molecule driver"
        for section, cfg_key in (("ansible", "cfg"), ("provisioner", "config_options")):
            config = doc.get(section) or {}
            for playbook in (config.get("playbooks") or {}).values():
                if is_fqcn(playbook) and not playbook.endswith((".yml", ".yaml")):
                    yield playbook, "molecule playbook"
            for settings in (config.get(cfg_key) or {}).values():
                for key, value in (settings or {}).items():
                    if key in CFG_PLUGIN_KEYS:
                        yield from ((name, f"molecule {cfg_key} {key}") for name in _plugin_settings(value))
            for key, value in (config.get("env") or {}).items():
                if key.startswith("ANSIBLE_") and key[len("ANSIBLE_"):].lower() in CFG_PLUGIN_KEYS:
                    yield from ((name, f"molecule env {key}") for name in _plugin_settings(value))


# --- Python --------------------------------------------------------------------------------------

def python_uses(source: str) -> Iterator[tuple[str, str]]:
    """`ansible_collections.<ns>.<coll>` imports and documentation fragments of a plugin."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            # `from ansible_collections.ns import coll` names the collection in the imported names
            modules = [f"{node.module}.{a.name}" for a in node.names] if len(parts) == 2 else [node.module]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "ansible_collections" and len(parts) >= 3:
                yield ".".join(parts[1:] if len(parts) > 3 else [*parts[1:], "*"]), "python import"
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                and any(isinstance(t, ast.Name) and t.id == "DOCUMENTATION" for t in node.targets)):
            doc = yaml.safe_load(node.value.value)
            fragments = doc.get("extends_documentation_fragment") if isinstance(doc, dict) else None
            for fragment in [fragments] if isinstance(fragments, str) else fragments or []:
                if is_fqcn(fragment):
                    yield fragment, "documentation fragment"


# --- files ---------------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """safe_load that keeps Ansible's `!unsafe` and `!vault` values as plain strings."""


for _tag in ("!unsafe", "!vault"):
    _Loader.add_constructor(_tag, lambda loader, node: loader.construct_scalar(node))


def load_yaml(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=_Loader))


def _lines(text: str, fqcn: str) -> tuple[int, ...]:
    name = fqcn.removesuffix(".*")
    rx = re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?!\w)")  # with_<fqcn>, group/<fqcn> count
    return tuple(n for n, line in enumerate(text.splitlines(), 1) if rx.search(line))


def file_uses(root: Path, path: Path) -> set[tuple[str, str]]:
    """(fqcn, how) found in one file of the collection at `root`."""
    rel = path.relative_to(root).parts
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return set(python_uses(text)) if rel[0] == "plugins" else set()
    if path.suffix == ".j2":
        return jinja_uses(text)
    if path.suffix not in (".yml", ".yaml"):
        return set()
    documents = load_yaml(text)
    found = _yaml_jinja_uses(documents)
    if rel[0] == "roles" and len(rel) > 2 and rel[2] in ("tasks", "handlers"):
        found |= {u for doc in documents if isinstance(doc, list) for item in doc for u in task_uses(item)}
    elif rel[0] == "roles" and rel[2:] in (("meta", "main.yml"), ("meta", "main.yaml")):
        found |= set(role_meta_uses(documents))
    elif rel[0] == "meta" and path.stem == "runtime":
        found |= set(runtime_uses(documents))
    elif rel[0] == "molecule" and path.stem == "molecule":
        found |= set(molecule_uses(documents))
    elif rel[0] in ("playbooks", "molecule"):
        found |= set(playbook_or_tasks_uses(documents))
    return found


SCANNED = ("plugins", "roles", "playbooks", "molecule")


def _scanned(root: Path, path: Path) -> bool:
    rel = path.relative_to(root).parts
    if "__pycache__" in rel or path.suffix not in (".py", ".j2", ".yml", ".yaml") or not path.is_file():
        return False
    return not (rel[0] == "roles" and rel[2:3] == ("files",))  # copied as they are, never templated


def collection_files(root: Path) -> Iterable[Path]:
    for top in SCANNED:
        yield from sorted(p for p in (root / top).rglob("*") if _scanned(root, p))
    for name in ("runtime.yml", "runtime.yaml"):
        if (root / "meta" / name).is_file():
            yield root / "meta" / name


def scan_collection(root: Path) -> list[Use]:
    """Every (file, FQCN, kind of use) in the collection checkout at `root`."""
    uses: list[Use] = []
    for path in collection_files(root):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(root).as_posix()
        uses += [Use(rel, fqcn, how, _lines(text, fqcn)) for fqcn, how in file_uses(root, path)]
    return sorted(uses)
