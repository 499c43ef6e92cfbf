"""roles/services for real: venv from the system Python, gunicorn as an unprivileged user, PG + moto.

The venv is cached in /var/tmp/cloudphoenix-test-services-venv between sessions (building it
takes ~30 s); everything else lives in a fresh directory per test.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.services.conftest import BUCKET
from tests.support.ansible import run_playbook
from tests.support.moto import MOTO_ENV
from tests.support.net import free_port, port_open
from tests.support.pg import wait_until

VENV_CACHE = "/var/tmp/cloudphoenix-test-services-venv"
SERVICE_USER = "cloudphoenix-svc"


@pytest.fixture
def role_env(clean_db, moto) -> Iterator[dict]:
    base = Path(tempfile.mkdtemp(prefix="cp-svc-role-", dir="/tmp"))
    base.chmod(0o755)  # the service user traverses it
    moto.client("s3").create_bucket(Bucket=BUCKET)
    ports = {"service_a": free_port(), "service_b": free_port()}
    extra_vars = {
        "services_region": "east",
        "services_address": "127.0.0.1",
        "services_instances": [{"name": name, "port": port} for name, port in ports.items()],
        "services_base_dir": str(base / "services"),
        "services_venv": VENV_CACHE,
        "services_state_dir": str(base / "east" / "services"),
        "services_pid_dir": str(base / "east" / "pids"),
        "services_db_dsn": clean_db.dsn(),
        "services_db_password_file": str(clean_db.password_file),
        "services_s3_bucket": BUCKET,
        "services_s3_endpoint_url": moto.endpoint_url,
        "services_aws_region": "us-east-1",
        "services_aws_access_key": MOTO_ENV["AWS_ACCESS_KEY_ID"],
        "services_aws_secret_key": MOTO_ENV["AWS_SECRET_ACCESS_KEY"],
        "services_fencing_enabled": False,
        "services_settings": {"RATE_LIMIT": "1000 per second"},
    }
    playbook = base / "deploy.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Deploy the services",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars": {
                        "ansible_connection": "local",
                        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                    },
                    "roles": [{"role": "cloudphoenix.stack.services"}],
                }
            ]
        )
    )
    yield {"base": base, "ports": ports, "vars": extra_vars, "playbook": playbook, "db": clean_db}
    run_playbook(playbook, "-i", "localhost,", extra_vars={**extra_vars, "services_state": "stopped"})
    shutil.rmtree(base, ignore_errors=True)


def deploy(env: dict, *args: str, **overrides):
    return run_playbook(
        env["playbook"],
        "-i",
        "localhost,",
        *args,
        extra_vars={**env["vars"], **overrides},
        env={"ANSIBLE_LOG_PATH": str(env["base"] / "ansible.log")},
        timeout=240,
    )


def master_pid(env: dict, name: str) -> int:
    return int((env["base"] / "east" / "pids" / f"{name}.pid").read_text())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_deploy_is_idempotent_reloads_on_change_and_never_prints_secrets(role_env):
    env = role_env
    first = deploy(env, "-v")
    assert first.rc == 0, first.stdout[-3000:]
    assert first.total("changed") > 0
    url_a = f"http://127.0.0.1:{env['ports']['service_a']}"
    url_b = f"http://127.0.0.1:{env['ports']['service_b']}"
    assert requests.get(url_a + "/readyz", timeout=5).status_code == 200
    assert requests.get(url_b + "/readyz", timeout=5).json()["checks"]["storage"]["ok"] is True
    order = {"customer_id": "role", "currency": "EUR", "items": [{"sku": "s", "quantity": 1, "unit_price_cents": 5}]}
    assert requests.post(url_a + "/orders", json=order, timeout=5).status_code == 201
    assert (
        requests.post(
            url_b + "/documents?name=a.txt", data=b"hi", headers={"Content-Type": "text/plain"}, timeout=5
        ).status_code
        == 201
    )
    # gunicorn runs as the unprivileged user, not root.
    pid_a = master_pid(env, "service_a")
    uid = int(
        next(
            line for line in Path(f"/proc/{pid_a}/status").read_text().splitlines() if line.startswith("Uid:")
        ).split()[1]
    )
    assert uid == pwd.getpwnam(SERVICE_USER).pw_uid != 0
    for secret in (env["db"].password, MOTO_ENV["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in first.stdout + first.stderr

    second = deploy(env)
    assert second.rc == 0 and second.total("changed") == 0, second.stdout[-3000:]

    env_file = env["base"] / "east" / "services" / "service_a.env"
    before = env_file.read_text()
    check = deploy(env, "--check", "--diff", services_workers=3)
    assert check.rc == 0 and check.total("changed") > 0
    assert "+CLOUDPHOENIX_WORKERS=3" in check.stdout and "-CLOUDPHOENIX_WORKERS=2" in check.stdout
    assert env_file.read_text() == before and master_pid(env, "service_a") == pid_a

    changed = deploy(env, services_workers=3)
    assert changed.rc == 0 and changed.total("changed") > 0
    assert master_pid(env, "service_a") == pid_a  # reloaded (SIGHUP), not restarted
    wait_until(
        lambda: (
            len(Path(f"/proc/{pid_a}/task").parent.joinpath("task").iterdir().__class__.__name__) > 0
            and _children(pid_a) == 3
        ),
        timeout=30,
        message="three workers after the reload",
    )
    assert requests.get(url_a + "/healthz", timeout=5).status_code == 200
    assert deploy(env, services_workers=3).total("changed") == 0


def _children(pid: int) -> int:
    return sum(1 for entry in Path("/proc").iterdir() if entry.name.isdigit() and _ppid(entry) == pid)


def _ppid(entry: Path) -> int | None:
    try:
        return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_check_mode_on_a_fresh_host_changes_nothing_and_bad_settings_fail_before_start(role_env):
    env = role_env
    dry = deploy(env, "--check")
    assert dry.rc == 0 and dry.total("changed") > 0, dry.stdout[-3000:]
    assert not (env["base"] / "services").exists() and not (env["base"] / "east").exists()
    result = deploy(env, services_settings={"DB_POOL_MAX": "0"})
    assert result.rc != 0
    assert "CLOUDPHOENIX_DB_POOL_MAX: must be an integer from 1 to 100, got '0'" in result.stdout
    assert not port_open("127.0.0.1", env["ports"]["service_a"]) and not port_open(
        "127.0.0.1", env["ports"]["service_b"]
    )
    bad_spec = deploy(env, services_workers="many")
    assert bad_spec.rc != 0 and "services_workers" in bad_spec.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_stop_is_graceful_and_idempotent(role_env):
    env = role_env
    assert deploy(env).rc == 0
    stopped = deploy(env, services_state="stopped")
    assert stopped.rc == 0 and stopped.total("changed") == 1  # one task, both services
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and port_open("127.0.0.1", env["ports"]["service_a"]):
        time.sleep(0.1)
    assert not port_open("127.0.0.1", env["ports"]["service_a"])
    assert deploy(env, services_state="stopped").total("changed") == 0
    assert os.path.exists(VENV_CACHE)
