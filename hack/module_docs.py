"""Regenerate the options/returns tables in docs/modules/*.md from the modules' DOCUMENTATION.

A page asks for a table with a marker pair; everything between the markers is replaced:

    <!-- module_docs: failover_fence options -->
    <!-- /module_docs -->

(`options` or `returns`). The text comes from `ansible-doc --json`, so doc fragments are merged
in exactly as `ansible-doc` shows them.

    .venv/bin/python hack/module_docs.py           # rewrite the tables
    .venv/bin/python hack/module_docs.py --check   # exit 1 when a table differs from the module
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = REPO / "docs" / "modules"
COLLECTION = "cloudphoenix.stack"
BLOCK = re.compile(r"(<!-- module_docs: (\w+) (options|returns) -->\n)(.*?)(<!-- /module_docs -->)", re.S)
MARKUP = re.compile(r"\b(RV|[OVCMIBUL])\(")


def ansible_doc(modules: list[str]) -> dict:
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".build" / "collections"))
    env.setdefault("ANSIBLE_HOME", str(REPO / ".build" / "ansible-home"))
    beside = Path(sys.executable).with_name("ansible-doc")  # the venv's, else the one on PATH
    cmd = [str(beside) if beside.exists() else "ansible-doc", "--json", *(f"{COLLECTION}.{m}" for m in modules)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return {name.rsplit(".", 1)[1]: data for name, data in json.loads(out).items()}


def markup(text: str) -> str:
    """Ansible's doc markup to Markdown; parentheses inside an argument are matched (C(f())."""
    parts, pos = [], 0
    for match in MARKUP.finditer(text):
        if match.start() < pos:
            continue
        depth, end = 1, match.end()
        while end < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        arg = text[match.end():end - 1]
        kind = match.group(1)
        if kind in ("O", "RV") and "#" in arg:  # O(fqcn#module:name) names another module's option
            plugin, _, name = arg.partition("#")
            rendered = f"`{name.partition(':')[2]}` (of `{plugin}`)"
        elif kind in ("O", "RV", "V", "C", "M"):
            rendered = f"`{arg}`"
        elif kind == "I":
            rendered = f"*{arg}*"
        elif kind == "B":
            rendered = f"**{arg}**"
        elif kind == "U":
            rendered = f"<{arg}>"
        else:  # L(text, url)
            label, _, url = arg.rpartition(",")
            rendered = f"[{label.strip()}]({url.strip()})"
        parts += [text[pos:match.start()], rendered]
        pos = end
    return "".join([*parts, text[pos:]])


def cell(value) -> str:
    text = " ".join(value) if isinstance(value, list) else str(value or "")
    return markup(" ".join(text.split())).replace("|", "\\|")


def type_of(spec: dict) -> str:
    kind = spec.get("type", "str")
    return f"{kind} of {spec['elements']}" if kind == "list" and spec.get("elements") else kind


def options_rows(options: dict, prefix: str = "") -> list[str]:
    rows = []
    for name in sorted(options):
        spec = options[name]
        if spec.get("required"):
            default = "**required**"
        elif spec.get("default") is None:
            default = ""
        else:
            value = spec["default"]
            default = f"`{value if isinstance(value, str) else json.dumps(value)}`"
        notes = cell(spec.get("description"))
        if spec.get("choices"):
            notes += " Choices: " + ", ".join(f"`{c}`" for c in spec["choices"]) + "."
        if spec.get("aliases"):
            notes += " Aliases: " + ", ".join(f"`{a}`" for a in spec["aliases"]) + "."
        rows.append(f"| `{prefix}{name}` | {type_of(spec)} | {default} | {notes.strip()} |")
        if spec.get("suboptions"):
            rows += options_rows(spec["suboptions"], f"{prefix}{name}{'[]' if spec.get('type') == 'list' else ''}.")
    return rows


def returns_rows(returns: dict, prefix: str = "") -> list[str]:
    rows = []
    for name in sorted(returns):
        spec = returns[name]
        rows.append(f"| `{prefix}{name}` | {type_of(spec)} | {cell(spec.get('returned'))} | "
                    f"{cell(spec.get('description'))} |")
        if spec.get("contains"):
            rows += returns_rows(spec["contains"], f"{prefix}{name}{'[]' if spec.get('type') == 'list' else ''}.")
    return rows


def table(doc: dict, what: str) -> str:
    if what == "options":
        head = ["| option | type | default | description |", "|---|---|---|---|"]
        rows = options_rows(doc["doc"].get("options") or {})
    else:
        head = ["| key | type | returned | description |", "|---|---|---|---|"]
        rows = returns_rows(doc.get("return") or {})
    return "\n".join([*head, *rows]) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    pages = {page: page.read_text(encoding="utf-8") for page in sorted(PAGES.glob("*.md"))}
    wanted = sorted({m.group(2) for text in pages.values() for m in BLOCK.finditer(text)})
    if not wanted:
        print("module_docs: no markers in docs/modules/*.md")
        return 0
    docs = ansible_doc(wanted)
    stale = []
    for page, text in pages.items():
        new = BLOCK.sub(lambda m: m.group(1) + table(docs[m.group(2)], m.group(3)) + m.group(5), text)
        if new != text:
            stale.append(str(page.relative_to(REPO)))
            if not check:
                page.write_text(new, encoding="utf-8")
    verb = "out of date" if check else "rewritten"
    print(f"module_docs: {len(wanted)} modules; {verb}: {', '.join(stale) or 'none'}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
