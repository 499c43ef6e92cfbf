"""gunicorn settings for both services; everything comes from the environment (or an env file).

    CLOUDPHOENIX_SERVICE=service_a CLOUDPHOENIX_BIND=127.0.10.1:8080 gunicorn -c services/gunicorn.conf.py

CLOUDPHOENIX_ENV_FILE (written by the role, 0600) is read here, in the master, on start and on
every SIGHUP, so a reload picks up changed settings and new workers start with them while the
old ones finish their requests.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time

from gunicorn.glogging import Logger


def _load_env_file():
    path = os.environ.get("CLOUDPHOENIX_ENV_FILE")
    if not path:
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                os.environ[key.strip()] = value.strip()


_load_env_file()
# The logging HOWTO's "Optimization" switches: no caller frame lookup, thread name or
# multiprocessing name per record (no format here uses them); the access log writes one record
# per request. Set here, in the master, so every worker forked from it inherits them.
logging._srcfile = None
logging.logThreads = False
logging.logMultiprocessing = False
_service = os.environ.get("CLOUDPHOENIX_SERVICE", "service_a")
if _service not in {"service_a", "service_b"}:
    raise SystemExit(f"CLOUDPHOENIX_SERVICE must be service_a or service_b, got {_service!r}")

# prometheus_client reads this at import time in each worker: set it before any worker starts.
# setdefault keeps the first directory across SIGHUP reloads so the sums stay continuous.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.environ.get("CLOUDPHOENIX_METRICS_DIR") or tempfile.mkdtemp(prefix="cp-metrics-")
)

wsgi_app = f"cloudphoenix_services.{_service}:create_app()"
chdir = os.path.dirname(os.path.abspath(__file__))  # the code dir: the starter's cwd may be unreadable for our user
bind = os.environ.get("CLOUDPHOENIX_BIND", "127.0.0.1:8080").split(",")
workers = int(os.environ.get("CLOUDPHOENIX_WORKERS", "2"))
worker_class = os.environ.get("CLOUDPHOENIX_WORKER_CLASS", "gthread")
threads = int(os.environ.get("CLOUDPHOENIX_THREADS", "4"))
timeout = int(os.environ.get("CLOUDPHOENIX_WORKER_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("CLOUDPHOENIX_GRACEFUL_TIMEOUT", "20"))  # bound on in-flight work at SIGTERM
keepalive = 5
# Worker recycling is off by default. With a few workers and keep-alive clients (a load balancer, wrk),
# a recycled worker's clients all reconnect to the workers still running while it boots, and stay
# there: measured with 2 workers, one worker did ~95% of the work and req/s fell by ~40% (bench
# services, docs/services.md). The services hold no per-request state, and a worker's memory stayed flat
# over ~90k requests (the bench prints it). Set CLOUDPHOENIX_MAX_REQUESTS (services_settings: MAX_REQUESTS)
# where a leak needs the safety net; the jitter keeps workers from recycling together.
max_requests = int(os.environ.get("CLOUDPHOENIX_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
pidfile = os.environ.get("CLOUDPHOENIX_PIDFILE") or None
proc_name = f"cloudphoenix-{_service}-{os.environ.get('CLOUDPHOENIX_REGION', 'local')}"
control_socket_disable = True  # gunicorn 27 otherwise shares ~/.gunicorn/gunicorn.ctl between instances
accesslog = os.environ.get("CLOUDPHOENIX_ACCESS_LOG", "-") or None  # empty: no access log
errorlog = os.environ.get("CLOUDPHOENIX_ERROR_LOG", "-")
loglevel = os.environ.get("CLOUDPHOENIX_LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("CLOUDPHOENIX_FORWARDED_ALLOW_IPS", "127.0.0.1")


_quote = json.encoder.encode_basestring_ascii  # json.dumps of one string, without json.dumps' per-call setup


def _json_text(value):
    return "null" if value is None else _quote(str(value))


class JsonAccessLogger(Logger):
    """Access log lines as JSON, with the request id the app returned.

    The line is built with one f-string (the fields and their order are fixed; only the strings
    need quoting): ~8 us instead of ~21 us for a dict + json.dumps, on every request.
    """

    _static = json.dumps(
        {"level": "info", "logger": "gunicorn.access", "service": _service,
         "region": os.environ.get("CLOUDPHOENIX_REGION", "local")}
    )[1:-1]  # fmt: skip
    _second = -1
    _ts = ""

    def access(self, resp, req, environ, request_time):
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.syslog):
            return
        now = int(time.time())
        if now != self._second:  # one strftime per second, not per request
            self._second, self._ts = now, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        request_id = None
        for name, value in resp.headers or ():
            if name.lower() == "x-request-id":
                request_id = value
                break
        status = resp.status_code if hasattr(resp, "status_code") else _json_text(str(resp.status).split()[0])
        sent = getattr(resp, "sent", None)
        remote, method, path = (_json_text(environ.get(key)) for key in ("REMOTE_ADDR", "REQUEST_METHOD", "PATH_INFO"))
        line = (
            f'{{"ts": "{self._ts}", {self._static}, "request_id": {_json_text(request_id)}, "remote": {remote}, '
            f'"method": {method}, "path": {path}, "status": {status}, "bytes": {"null" if sent is None else sent}, '
            f'"duration_ms": {round(request_time.total_seconds() * 1000, 2)}}}'
        )
        try:
            self.access_log.info(line)
        except Exception:  # noqa: BLE001 - a log line must never fail a request
            self.exception("access log failed")


logger_class = JsonAccessLogger


def on_starting(server):
    """Validate settings before binding: a bad setting stops here, nothing half-started.

    In a child process, so the master never imports the app: workers forked after a SIGHUP then
    load the code and packages as they are now, not as they were when the master started.
    """
    check = subprocess.run(
        [sys.executable, "-m", "cloudphoenix_services", "check-config", "--service", _service],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if check.returncode != 0:
        try:
            message = json.loads(check.stdout)["msg"]
        except (ValueError, KeyError):
            message = (check.stdout + check.stderr).strip()
        server.log.error("%s", message)
        raise SystemExit(2)
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(metrics_dir, ignore_errors=True)  # stale files from a previous run would be summed
    os.makedirs(metrics_dir, mode=0o700, exist_ok=True)


def on_reload(server):
    server.log.info("reloading %s: new workers start with the re-read settings", _service)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    """Close the pool and stop the fencing refresher after the last in-flight request finished."""
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get("cloudphoenix") if app is not None else None
    if state is not None:
        state.close()
