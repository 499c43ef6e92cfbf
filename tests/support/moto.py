"""moto in *server* mode: a real HTTP endpoint that boto3 (and amazon.aws) talk to."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .net import free_port, wait_for_port

# Fake credentials for the emulator; never real keys. Tests assert they are not echoed.
MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key-do-not-print",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class MotoServer:
    host: str = "127.0.0.1"
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        self.port = self.port or free_port(self.host)
        moto_bin = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen(
            [str(moto_bin), "-H", self.host, "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **MOTO_ENV},
        )
        wait_for_port(self.host, self.port)
        return self

    def reset(self) -> None:
        """Forget every resource (POST /moto-api/reset)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - http on the loopback emulator
            pass

    def client(self, service: str, region: str = "us-east-1"):
        import boto3

        return boto3.client(
            service, endpoint_url=self.endpoint_url, region_name=region,
            aws_access_key_id=MOTO_ENV["AWS_ACCESS_KEY_ID"], aws_secret_access_key=MOTO_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
