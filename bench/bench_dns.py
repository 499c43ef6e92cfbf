"""Switch 1, 100 and 1000 DNS records with wait=true on BIND (RFC 2136) and on moto (Route 53).

`python -m bench dns` prints a table. Each cell is the median of REPEAT module runs (a real
process started the way AnsiballZ starts a module: interpreter + imports included), switching
the records back and forth between the east and west addresses; sizes are interleaved per
round so load spikes on a shared machine hit every size alike. Target: 1000 records take at
most 2x the time of 1 record. Servers run on free ports (never the lab's).
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from tests.support.ansible import run_module
from tests.support.bind import BindServer
from tests.support.moto import MOTO_ENV, MotoServer

SIZES = (1, 100, 1000)
REPEAT = int(os.environ.get("BENCH_DNS_REPEAT", "5"))
ZONE = "phoenix.test"
ADDRESSES = ("127.0.10.1", "127.0.20.1")


def _records(count: int, address: str) -> list[dict]:
    # each size has its own names, so sizes can be interleaved on one zone
    return [{"name": f"n{count}-{i}.{ZONE}", "type": "A", "ttl": 5, "values": [address]} for i in range(count)]


def _cpu_seconds(pid: int | None = None) -> float:
    """user+sys CPU seconds of the waited-for children (pid None) or of the running process `pid`."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(provider: str, args: dict, server_pid: int) -> list[tuple]:
    """Sizes interleaved round by round, so a load spike on the shared machine hits every size alike."""
    walls: dict[int, list[float]] = {n: [] for n in SIZES}
    inside: dict[int, list[float]] = {n: [] for n in SIZES}
    cpu: dict[int, list[float]] = {n: [] for n in SIZES}
    server_cpu: dict[int, list[float]] = {n: [] for n in SIZES}
    batches: dict[int, int] = {}
    for count in SIZES:  # set up, not timed
        assert not run_module("dns_records", {**args, "records": _records(count, ADDRESSES[0])}).failed
    for round_no in range(REPEAT):
        address = ADDRESSES[(round_no + 1) % 2]
        for count in SIZES:
            cpu_before, server_before = _cpu_seconds(), _cpu_seconds(server_pid)
            started = time.monotonic()
            result = run_module("dns_records", {**args, "records": _records(count, address), "wait": True})
            walls[count].append(time.monotonic() - started)
            cpu[count].append(_cpu_seconds() - cpu_before)
            server_cpu[count].append(_cpu_seconds(server_pid) - server_before)
            if result.failed or not result.changed:
                raise RuntimeError(f"switch failed: {result.get('msg')}")
            inside[count].append(result["timings"]["total"])
            batches[count] = len(result["batches"])
    return [(provider, n, {"wall": statistics.median(walls[n]), "inside": statistics.median(inside[n]),
                           "batches": batches[n], "cpu": statistics.median(cpu[n]),
                           "server_cpu": statistics.median(server_cpu[n])}) for n in SIZES]


def _bind_rows() -> list[tuple]:
    server = BindServer(base_dir=Path(tempfile.mkdtemp(prefix="cp-bench-bind-", dir="/tmp"))).start()
    try:
        return _measure("BIND 9 (rfc2136)", {
            "provider": "rfc2136", "server": server.host, "port": server.port, "zone": ZONE,
            "key_name": server.key_name, "key_secret": server.secret}, server.process.pid)
    finally:
        server.destroy()


def _moto_rows() -> list[tuple]:
    os.environ.update(MOTO_ENV)
    server = MotoServer().start()
    try:
        server.client("route53").create_hosted_zone(Name=ZONE, CallerReference="bench")
        # switching existing single-value records is an UPSERT: counted twice against Route 53's limit
        # of 1000 ResourceRecord elements per batch, so 1000 records need allow_split (2 batches)
        return _measure("moto (route53)", {"provider": "route53", "zone": ZONE, "endpoint_url": server.endpoint_url,
                                           "allow_split": True}, server.process.pid)
    finally:
        server.stop()


def _start_only() -> float:
    """The module process alone: interpreter, imports, AnsibleModule with its argument checks, then a validation
    failure before any provider client or traffic (wait_timeout=0). Median of REPEAT runs."""
    args = {"provider": "rfc2136", "server": "127.0.0.1", "port": 9, "zone": ZONE, "wait_timeout": 0,
            "records": _records(1, ADDRESSES[0])}
    walls = []
    for _dummy in range(REPEAT):
        started = time.monotonic()
        result = run_module("dns_records", args)
        walls.append(time.monotonic() - started)
        if not result.failed or "wait_timeout" not in result.get("msg", ""):
            raise RuntimeError(f"unexpected result of the start-only run: {result.result}")
    return statistics.median(walls)


def run() -> None:
    start_only = _start_only()
    rows = _bind_rows() + _moto_rows()
    print(f"switch N A records with wait=true, median of {REPEAT} module runs (process start included),"
          " sizes interleaved")
    print(f"{'provider':<18} {'records':>7} {'module s':>9} {'in-module s':>12} {'batches':>8} {'x of 1':>7}")
    base = {}
    for provider, count, figures in rows:
        base.setdefault(provider, figures["wall"])
        ratio = figures["wall"] / base[provider]
        print(f"{provider:<18} {count:>7} {figures['wall']:>9.3f} {figures['inside']:>12.3f} "
              f"{figures['batches']:>8} {ratio:>7.2f}")
    for provider in base:
        thousand = next(f for p, c, f in rows if p == provider and c == 1000)
        verdict = "met" if thousand["wall"] <= 2 * base[provider] else "NOT met"
        print(f"target 1000 <= 2 x 1 on {provider}: {verdict}")
    print(f"for reference, process start only (module fails validation before any client or traffic): "
          f"{start_only:.3f} s")
    print("for reference, CPU seconds (user+sys, median) of the module process and of the server (named / "
          "moto_server) per switch: less sensitive to other load than the wall times above")
    print(f"{'provider':<18} {'records':>7} {'module cpu':>11} {'server cpu':>11} {'sum x of 1':>11}")
    base_cpu = {}
    for provider, count, figures in rows:
        total = figures["cpu"] + figures["server_cpu"]
        base_cpu.setdefault(provider, total)
        print(f"{provider:<18} {count:>7} {figures['cpu']:>11.3f} {figures['server_cpu']:>11.3f} "
              f"{total / base_cpu[provider]:>11.2f}")


if __name__ == "__main__":
    run()
