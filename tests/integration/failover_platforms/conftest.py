"""Run the failover role's platform task files (tasks/platform_rds.yml, tasks/platform_kubernetes.yml) alone.

Each test writes a small playbook that includes `cloudphoenix.stack.failover` with `tasks_from` and the
step variable main.yml passes, on an inventory holding only localhost (never the lab's). The role's
defaults (defaults/main.yml) apply as in a real run; any `inventory_vars` files are that inventory's
group_vars/all, so the test's play vars, set_fact and include_role vars win over them as they would over
inventory variables. The last
task dumps the facts the report reads to a JSON file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.ansible import PlaybookRun, run_playbook
from tests.support.moto import MOTO_ENV, MotoServer
from tests.support.net import free_port, wait_for_port

FACTS = ["failover_rds", "failover_promote", "failover_fence_db", "failover_k8s_fence", "failover_k8s_repoint",
         "failover_fence_services", "failover_repoint"]


@dataclass
class Run:
    run: PlaybookRun
    facts: dict

    @property
    def output(self) -> str:
        return self.run.stdout + self.run.stderr


def run_steps(tmp_path: Path, steps: list[tuple[str, dict]], play_vars: dict, *args: str,
              inventory_vars: list[Path] | None = None, env: dict[str, str] | None = None) -> Run:
    """Include tasks_from `steps[i][0]` with vars `steps[i][1]`, in order, in one play; returns the run + facts."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    facts_file = tmp_path / f"facts-{len(list(tmp_path.glob('facts-*.json')))}.json"
    tasks = [{"name": f"Include {name} {vars_}", "ansible.builtin.include_role": {
        "name": "cloudphoenix.stack.failover", "tasks_from": name}, "vars": vars_} for name, vars_ in steps]
    tasks.append({"name": "Dump the facts the report reads", "check_mode": False, "changed_when": False,
                  "ansible.builtin.copy": {
                      "dest": str(facts_file), "mode": "0600",
                      "content": "{{ {" + ", ".join(f"'{f}': {f} | default(none)" for f in FACTS) + "} | to_json }}"}})
    play = [{"name": "failover platform steps", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}", **play_vars},
             "tasks": tasks}]
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    (inventory / "hosts.ini").write_text("localhost ansible_connection=local\n")
    for index, source in enumerate(inventory_vars or []):
        (inventory / "group_vars" / "all" / f"{index:02d}-{source.stem}.yml").write_text(source.read_text())
    if facts_file.exists():
        facts_file.unlink()
    run = run_playbook(playbook, *args, inventory=inventory, env=env)
    facts = json.loads(facts_file.read_text()) if facts_file.exists() else {}
    return Run(run=run, facts=facts)


# Seconds the patched moto takes to promote a replica (modifying, still replicating, then standalone).
PROMOTE_SECONDS = 3


class PatchedMoto(MotoServer):
    """moto_server with RDS StatusInfos + a detaching PromoteReadReplica that takes PROMOTE_SECONDS."""

    def start(self) -> PatchedMoto:
        self.port = self.port or free_port(self.host)
        script = Path(__file__).with_name("moto_rds_like_aws.py")
        self.process = subprocess.Popen(
            [sys.executable, str(script), self.host, str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **MOTO_ENV, "MOTO_RDS_PROMOTE_SECONDS": str(PROMOTE_SECONDS)},
        )
        wait_for_port(self.host, self.port)
        return self


@pytest.fixture(scope="session")
def moto_rds_server() -> Iterator[PatchedMoto]:
    server = PatchedMoto().start()
    yield server
    server.stop()


@pytest.fixture
def moto_rds(moto_rds_server: PatchedMoto, monkeypatch: pytest.MonkeyPatch) -> PatchedMoto:
    """A reset patched moto, fake AWS credentials in the environment."""
    moto_rds_server.reset()
    for key, value in MOTO_ENV.items():
        monkeypatch.setenv(key, value)
    return moto_rds_server
