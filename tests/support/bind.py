"""A real BIND9 (`named`) serving one zone with TSIG-signed dynamic updates, on a free port."""

from __future__ import annotations

import base64
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.query
import dns.tsig
import dns.tsigkeyring
import dns.update

from .net import free_port

NAMED = os.environ.get("CLOUDPHOENIX_NAMED", "/usr/sbin/named")


@dataclass
class BindServer:
    base_dir: Path
    zone: str = "phoenix.test"
    key_name: str = "cloudphoenix-test"
    key_algorithm: str = "hmac-sha256"
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    secret: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(32)).decode())
    records: str = ""  # extra zone-file lines
    zone_options: str = ""  # extra statements in the zone block, e.g. "allow-transfer { none; };"
    process: subprocess.Popen | None = None

    @property
    def zone_file(self) -> Path:
        return self.base_dir / f"{self.zone}.zone"

    def write_config(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.zone_file.write_text(
            f"$TTL 5\n"
            f"@ IN SOA ns1.{self.zone}. hostmaster.{self.zone}. 1 60 30 600 5\n"
            f"@ IN NS ns1.{self.zone}.\n"
            f"ns1 IN A {self.host}\n"
            f"{self.records}\n"
        )
        (self.base_dir / "named.conf").write_text(
            f'key "{self.key_name}" {{ algorithm {self.key_algorithm}; secret "{self.secret}"; }};\n'
            "controls { };\n"
            "options {\n"
            f'  directory "{self.base_dir}";\n'
            f'  pid-file "{self.base_dir}/named.pid";\n'
            f"  listen-on port {self.port} {{ {self.host}; }};\n"
            "  listen-on-v6 { none; };\n"
            "  recursion no;\n"
            "  notify no;\n"
            "  dnssec-validation no;\n"
            "};\n"
            f'zone "{self.zone}" {{\n'
            "  type primary;\n"
            f'  file "{self.zone_file}";\n'
            f"  update-policy {{ grant {self.key_name} zonesub ANY; }};\n"
            f"{self.zone_options}\n"
            "};\n"
        )
        bind_user = pwd.getpwnam("bind")
        for path in [self.base_dir, *self.base_dir.iterdir()]:
            os.chown(path, bind_user.pw_uid, bind_user.pw_gid)

    def start(self) -> BindServer:
        self.write_config()
        self.process = subprocess.Popen(
            [NAMED, "-g", "-u", "bind", "-c", str(self.base_dir / "named.conf")],
            stdout=subprocess.DEVNULL, stderr=open(self.base_dir / "named.log", "wb"),  # noqa: SIM115
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15) -> None:
        import dns.message
        import dns.query

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                query = dns.message.make_query(self.zone, "SOA")
                dns.query.udp(query, self.host, port=self.port, timeout=0.3)
                return
            except Exception:  # noqa: BLE001 - not up yet
                if self.process and self.process.poll() is not None:
                    raise RuntimeError((self.base_dir / "named.log").read_text()) from None
                time.sleep(0.05)
        raise TimeoutError("named did not answer")

    def pause(self) -> None:
        assert self.process
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)


def set_active(bind: BindServer, *texts: str) -> None:
    """What the runbook's claim does: a TSIG-signed update of the fencing record `_active` (several texts:
    several TXT records, a malformed record set)."""
    keyring = dns.tsigkeyring.from_text({bind.key_name: bind.secret})
    update = dns.update.UpdateMessage(bind.zone, keyring=keyring, keyalgorithm=dns.tsig.HMAC_SHA256)
    update.replace("_active", 5, "TXT", *(f'"{text}"' for text in texts))
    assert dns.query.tcp(update, bind.host, port=bind.port, timeout=5).rcode() == 0
