# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Concurrent HTTP endpoint checks: the logic behind the service_check module.

Standard library only (http.client, ssl, concurrent.futures); dnspython is needed only to
resolve a URL's host name through a given DNS server (imported on demand, guarded).

Shape of the work:
- ``build_specs()`` validates and normalises every endpoint before any request is made and
  raises ``CheckSpecError`` naming every problem at once.
- ``check_endpoint()`` runs one endpoint: each attempt (re)resolves the host name (through
  the given DNS server if any), connects to the answer while keeping the Host header and the
  TLS SNI name, sends the request and compares the answer with the expectations. Any failed
  attempt is retried with jittered backoff (``_retry.call_with_retries``) until the
  endpoint's deadline or ``max_attempts``; a TLS certificate error is not retried.
- ``run_checks()`` runs all endpoints on a thread pool and returns results in input order.
No request headers are ever copied into a result or an error message.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from ansible_collections.cloudphoenix.stack.plugins.module_utils._retry import (
    RetryBudgetExceeded,
    call_with_retries,
)

try:
    import dns.exception
    import dns.resolver
    HAS_DNSPYTHON = True
    DNSPYTHON_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - depends on the target's Python
    HAS_DNSPYTHON = False
    DNSPYTHON_IMPORT_ERROR = _exc

ALLOWED_METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
MAX_BODY_BYTES = 1024 * 1024
MIN_ATTEMPT_TIMEOUT = 0.05
BODY_EXCERPT = 160
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

# Values used when neither the endpoint nor the module gives one.
DEFAULTS = {
    "method": "GET",
    "expect_status": [200],
    "timeout": 5.0,
    "deadline": 30.0,
    "max_attempts": None,
    "dns_server": None,
    "dns_port": 53,
    "validate_certs": True,
    "ca_path": None,
    "expect_address": None,
    "headers": {},
}


class CheckSpecError(ValueError):
    """Bad input: raised before any request is made; ``problems`` lists every one."""

    def __init__(self, problems):
        self.problems = list(problems)
        super(CheckSpecError, self).__init__("invalid endpoints: " + "; ".join(self.problems))


class AttemptFailed(Exception):
    """One attempt did not meet the expectations (or could not be made)."""

    def __init__(self, message, status=None, transient=True):
        self.status = status
        self.transient = transient
        super(AttemptFailed, self).__init__(message)


# --------------------------------------------------------------------------- JSON paths

def parse_json_path(path):
    """'a.b.0.c' -> ['a', 'b', 0, 'c']: dotted keys, all-digit parts index lists."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError("JSON path must be a non-empty string")
    parts = []
    for part in path.split("."):
        if part == "":
            raise ValueError("JSON path %r has an empty part" % path)
        parts.append(int(part) if part.isdigit() else part)
    return parts


_MISSING = object()


def lookup_json(document, path):
    """The value at dotted ``path`` in ``document``, or ``_MISSING``."""
    current = document
    for part in parse_json_path(path):
        if isinstance(current, dict):
            key = str(part)
            if key not in current:
                return _MISSING
            current = current[key]
        elif isinstance(current, list) and isinstance(part, int):
            if part >= len(current):
                return _MISSING
            current = current[part]
        else:
            return _MISSING
    return current


def _json_equal(actual, expected):
    # JSON true must not equal 1, nor 1 equal true (Python's bool is an int).
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)):
        return actual == expected
    if isinstance(actual, dict) and isinstance(expected, dict):
        return set(actual) == set(expected) and all(_json_equal(actual[k], expected[k]) for k in actual)
    if isinstance(actual, list) and isinstance(expected, (list, tuple)):
        return len(actual) == len(expected) and all(
            _json_equal(actual[i], expected[i]) for i in range(len(actual)))
    return type(actual) is type(expected) and actual == expected


def _short(value, limit=80):
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def evaluate_response(spec, status, body):
    """Problems (strings) with one answer; [] means it meets every expectation.

    Also returns the parsed JSON document (or None) so callers can capture fields from it.
    """
    problems = []
    text = body.decode("utf-8", errors="replace")
    if status not in spec["expect_status"]:
        problem = "status %d, expected %s" % (status, _status_list(spec["expect_status"]))
        excerpt = " ".join(text.split())
        if excerpt:  # what the service says about itself (a problem document, readiness details)
            problem += " (body: %s)" % (excerpt if len(excerpt) <= BODY_EXCERPT else excerpt[:BODY_EXCERPT - 3] + "...")
        problems.append(problem)
    if spec["expect_body_regex"] is not None and not spec["expect_body_regex"].search(text):
        problems.append("body does not match %r" % spec["expect_body_regex"].pattern)
    document = None
    if spec["expect_json"] or spec["capture"]:
        try:
            document = json.loads(text)
        except ValueError:
            problems.append("body is not JSON")
            return problems, None
        for path, expected in spec["expect_json"].items():
            actual = lookup_json(document, path)
            if actual is _MISSING:
                problems.append("JSON field %s missing (expected %s)" % (path, _short(expected)))
            elif not _json_equal(actual, expected):
                problems.append("JSON field %s is %s, expected %s" % (path, _short(actual), _short(expected)))
        for path in spec["capture"]:
            if lookup_json(document, path) is _MISSING:
                problems.append("JSON field %s to capture is missing" % path)
    return problems, document


def _status_list(statuses):
    return "%d" % statuses[0] if len(statuses) == 1 else "one of %s" % ", ".join(str(s) for s in statuses)


# --------------------------------------------------------------------------- input

def _pick(raw, defaults, key):
    value = raw.get(key)
    if value is None:
        value = defaults.get(key)
    if value is None:
        value = DEFAULTS.get(key)
    return value


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def build_spec(raw, defaults=None):
    """Validate one endpoint (a dict of module options); returns (spec, problems)."""
    defaults = defaults or {}
    problems = []
    url = raw.get("url")
    name = raw.get("name") or url or "<no url>"
    spec = {"name": name, "url": url}

    def bad(message):
        problems.append("%s: %s" % (name, message))

    parts = None
    if not isinstance(url, str) or not url:
        bad("url is required")
    else:
        try:
            parts = urlsplit(url)
            port = parts.port  # raises ValueError for a bad port
        except ValueError as exc:
            bad("url is not valid (%s)" % exc)
            parts = None
        if parts is not None:
            if parts.scheme not in ("http", "https"):
                bad("url scheme must be http or https, not %r" % parts.scheme)
            if not parts.hostname:
                bad("url has no host")
            if parts.username is not None or parts.password is not None:
                bad("url must not carry credentials; send them in headers (no_log)")
            if any(c.isspace() for c in url):
                bad("url must not contain whitespace")
            spec.update(
                scheme=parts.scheme,
                host=parts.hostname,
                port=port or (443 if parts.scheme == "https" else 80),
                target=(parts.path or "/") + ("?" + parts.query if parts.query else ""),
            )
            default_port = (parts.scheme == "https" and spec["port"] == 443) or (
                parts.scheme == "http" and spec["port"] == 80)
            host_text = "[%s]" % parts.hostname if ":" in (parts.hostname or "") else parts.hostname
            spec["host_header"] = host_text if default_port else "%s:%d" % (host_text, spec["port"])

    method = str(_pick(raw, defaults, "method")).upper()
    if method not in ALLOWED_METHODS:
        bad("method %r is not one of %s" % (method, ", ".join(ALLOWED_METHODS)))
    spec["method"] = method

    statuses = _pick(raw, defaults, "expect_status")
    if not isinstance(statuses, (list, tuple)):
        statuses = [statuses]
    clean_statuses = []
    for status in statuses:
        try:
            number = int(status)
        except (TypeError, ValueError):
            bad("expect_status %r is not a number" % (status,))
            continue
        if not 100 <= number <= 599:
            bad("expect_status %d is not an HTTP status (100-599)" % number)
        clean_statuses.append(number)
    if not statuses:
        bad("expect_status must list at least one status")
    spec["expect_status"] = clean_statuses

    regex = raw.get("expect_body_regex")
    spec["expect_body_regex"] = None
    if regex is not None:
        try:
            spec["expect_body_regex"] = re.compile(regex)
        except (re.error, TypeError) as exc:
            bad("expect_body_regex %r does not compile: %s" % (regex, exc))

    expect_json = raw.get("expect_json") or {}
    if not isinstance(expect_json, dict):
        bad("expect_json must be a mapping of dotted path to value")
        expect_json = {}
    for path in expect_json:
        try:
            parse_json_path(path)
        except ValueError as exc:
            bad("expect_json: %s" % exc)
    spec["expect_json"] = dict(expect_json)

    capture = raw.get("capture") or []
    if isinstance(capture, str):
        capture = [capture]
    for path in capture:
        try:
            parse_json_path(path)
        except ValueError as exc:
            bad("capture: %s" % exc)
    spec["capture"] = list(capture)

    body, json_body = raw.get("body"), raw.get("json_body")
    spec["payload"] = None
    content_type = None
    if body is not None and json_body is not None:
        bad("body and json_body are mutually exclusive")
    elif json_body is not None:
        try:
            spec["payload"] = json.dumps(json_body, sort_keys=True).encode("utf-8")
        except (TypeError, ValueError) as exc:
            bad("json_body cannot be encoded as JSON: %s" % exc)
        content_type = "application/json"
    elif body is not None:
        spec["payload"] = body.encode("utf-8") if isinstance(body, str) else bytes(body)

    headers = {}
    for source in (DEFAULTS["headers"], defaults.get("headers") or {}, raw.get("headers") or {}):
        if not isinstance(source, dict):
            bad("headers must be a mapping")
            continue
        for key, value in source.items():
            key = str(key)
            # The value is never quoted in a message: it may be a secret.
            if not _HEADER_NAME.match(key):
                bad("header name %r is not a valid HTTP header name" % key)
            elif value is None or any(c in str(value) for c in "\r\n\0"):
                bad("header %s has an empty or multi-line value" % key)
            # Case-insensitive override: the endpoint's header wins over the module's.
            for existing in [k for k in headers if k.lower() == key.lower()]:
                del headers[existing]
            headers[key] = "" if value is None else str(value)
    if content_type and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = content_type
    if not any(k.lower() == "host" for k in headers) and "host_header" in spec:
        headers["Host"] = spec["host_header"]
    headers.setdefault("Connection", "close")
    headers.setdefault("User-Agent", "cloudphoenix-service_check")
    spec["headers"] = headers

    for key in ("timeout", "deadline"):
        value = _pick(raw, defaults, key)
        try:
            value = float(value)
        except (TypeError, ValueError):
            bad("%s %r is not a number" % (key, value))
            value = DEFAULTS[key]
        if value <= 0:
            bad("%s must be greater than 0 (got %s)" % (key, value))
        spec[key] = value

    max_attempts = _pick(raw, defaults, "max_attempts")
    if max_attempts is not None:
        try:
            max_attempts = int(max_attempts)
        except (TypeError, ValueError):
            bad("max_attempts %r is not a number" % (max_attempts,))
            max_attempts = None
        else:
            if max_attempts < 1:
                bad("max_attempts must be at least 1")
    spec["max_attempts"] = max_attempts

    dns_server = _pick(raw, defaults, "dns_server")
    if dns_server is not None and not _is_ip(str(dns_server)):
        bad("dns_server must be an IP address, not %r" % (dns_server,))
    spec["dns_server"] = None if dns_server is None else str(dns_server)
    dns_port = _pick(raw, defaults, "dns_port")
    try:
        dns_port = int(dns_port)
    except (TypeError, ValueError):
        bad("dns_port %r is not a number" % (dns_port,))
        dns_port = 53
    if not 1 <= dns_port <= 65535:
        bad("dns_port %d is not a port (1-65535)" % dns_port)
    spec["dns_port"] = dns_port
    spec["validate_certs"] = bool(_pick(raw, defaults, "validate_certs"))
    ca_path = _pick(raw, defaults, "ca_path")
    if ca_path is not None:
        ca_path = str(ca_path)
        if not os.path.isfile(ca_path) or not os.access(ca_path, os.R_OK):
            bad("ca_path %s is not a readable file" % ca_path)
    spec["ca_path"] = ca_path

    expect_address = _pick(raw, defaults, "expect_address")
    if isinstance(expect_address, str):
        expect_address = [expect_address]
    clean_addresses = []
    for item in expect_address or []:
        try:
            clean_addresses.append(str(ipaddress.ip_address(str(item))))
        except ValueError:
            bad("expect_address %r is not an IP address" % (item,))
    spec["expect_address"] = clean_addresses
    return spec, problems


def build_specs(endpoints, defaults=None):
    """Validate every endpoint; raise CheckSpecError listing all problems, else return specs."""
    problems = []
    specs = []
    if not endpoints:
        raise CheckSpecError(["endpoints must list at least one endpoint"])
    for index, raw in enumerate(endpoints):
        if not isinstance(raw, dict):
            problems.append("endpoint #%d is not a mapping" % (index + 1))
            continue
        spec, spec_problems = build_spec(raw, defaults)
        problems.extend(spec_problems)
        specs.append(spec)
    seen = set()
    for spec in specs:
        if spec["name"] in seen:
            problems.append("%s: endpoint names must be unique (give each a name)" % spec["name"])
        seen.add(spec["name"])
    if any(spec.get("dns_server") and not _is_ip(spec.get("host") or "") for spec in specs) and not HAS_DNSPYTHON:
        problems.append("dns_server needs the Python library dnspython on the host that runs the check")
    if problems:
        raise CheckSpecError(problems)
    return specs


# --------------------------------------------------------------------------- requests

def resolve(host, server, port, timeout):
    """The first IPv4 (else IPv6) address of ``host`` as ``server``:``port`` answers it."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server]
    resolver.port = port
    resolver.timeout = timeout
    resolver.lifetime = timeout
    where = "%s:%d" % (server, port)
    try:
        for rdtype in ("A", "AAAA"):
            answer = resolver.resolve(host, rdtype, search=False, raise_on_no_answer=False)
            addresses = sorted(rr.address for rr in answer) if answer.rrset is not None else []
            if addresses:
                return addresses[0]
    except dns.resolver.NXDOMAIN:
        raise AttemptFailed("DNS: %s does not exist (NXDOMAIN) at %s" % (host, where)) from None
    except dns.exception.Timeout:
        raise AttemptFailed("DNS: no answer for %s from %s within %.2fs" % (host, where, timeout)) from None
    except dns.exception.DNSException as exc:
        raise AttemptFailed("DNS: cannot resolve %s at %s: %s" % (host, where, exc)) from None
    raise AttemptFailed("DNS: %s has no A/AAAA record at %s" % (host, where))


def system_resolve(host, port):
    """The first address the system resolver gives for ``host`` (IPv4 first)."""
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AttemptFailed("cannot resolve %s: %s" % (host, exc.strerror or exc)) from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return infos[0][4][0]


class _SNIHTTPSConnection(http.client.HTTPSConnection):
    """Connects to an address but sends SNI (and checks the certificate) for the URL's host."""

    def __init__(self, address, port, server_hostname, **kwargs):
        http.client.HTTPSConnection.__init__(self, address, port, **kwargs)
        self._server_hostname = server_hostname

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_hostname)


def _connection(spec, address, timeout):
    if spec["scheme"] == "http":
        return http.client.HTTPConnection(address, spec["port"], timeout=timeout)
    context = ssl.create_default_context(cafile=spec["ca_path"])
    if not spec["validate_certs"]:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return _SNIHTTPSConnection(address, spec["port"], spec["host"], timeout=timeout, context=context)


def _describe_os_error(exc, address, port, timeout):
    target = "%s:%d" % (address, port)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out after %.2fs (%s)" % (timeout, target)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (%s)" % target
    if isinstance(exc, ConnectionResetError):
        return "connection reset (%s)" % target
    if isinstance(exc, socket.gaierror):
        return "cannot resolve host (%s): %s" % (target, exc.strerror or exc)
    return "%s (%s): %s" % (type(exc).__name__, target, getattr(exc, "strerror", None) or exc)


def attempt(spec, timeout, state):
    """One request; updates ``state`` (address, status, latency); raises AttemptFailed."""
    state["attempts"] += 1
    state["status"] = None
    address = spec["host"]
    started = time.monotonic()
    try:
        if _is_ip(spec["host"]):
            address = str(ipaddress.ip_address(spec["host"]))
        elif spec["dns_server"]:
            address = resolve(spec["host"], spec["dns_server"], spec["dns_port"], timeout)
        elif spec["expect_address"]:
            address = system_resolve(spec["host"], spec["port"])
        state["resolved_address"] = address if _is_ip(address) else None
        if spec["expect_address"] and address not in spec["expect_address"]:
            # Checked before connecting: a write must not land in the wrong region.
            raise AttemptFailed("%s resolved to %s, expected %s (request not sent)" % (
                spec["host"], address, " or ".join(spec["expect_address"])))
        conn = _connection(spec, address, timeout)
        try:
            conn.request(spec["method"], spec["target"], body=spec["payload"], headers=spec["headers"])
            response = conn.getresponse()
            if state["resolved_address"] is None and conn.sock is not None:
                state["resolved_address"] = conn.sock.getpeername()[0]
            body = b"" if spec["method"] == "HEAD" else response.read(MAX_BODY_BYTES)
            status = response.status
        finally:
            conn.close()
    except AttemptFailed:
        state["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
        raise
    except ssl.SSLCertVerificationError as exc:
        state["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
        raise AttemptFailed("TLS certificate rejected for %s: %s" % (spec["host"], exc.verify_message or exc),
                            transient=False) from None
    except (OSError, http.client.HTTPException) as exc:
        state["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
        if isinstance(exc, http.client.HTTPException) and not isinstance(exc, OSError):
            message = "bad HTTP answer from %s:%d: %s" % (address, spec["port"], type(exc).__name__)
            raise AttemptFailed(message) from None
        raise AttemptFailed(_describe_os_error(exc, address, spec["port"], timeout)) from None
    state["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
    state["status"] = status
    problems, document = evaluate_response(spec, status, body)
    if problems:
        raise AttemptFailed("; ".join(problems), status=status)
    return document


def check_endpoint(spec, backoff_base=0.1, backoff_max=2.0, check_mode=False, clock=time.monotonic,
                   sleep=time.sleep):
    """Run one endpoint until it meets its expectations or its deadline; returns its result."""
    result = {
        "name": spec["name"],
        "url": spec["url"],
        "method": spec["method"],
        "ok": False,
        "status": None,
        "latency_ms": None,
        "elapsed_ms": 0.0,
        "attempts": 0,
        "resolved_address": None,
        "error": None,
        "captured": {},
        "skipped": False,
    }
    if check_mode and spec["method"] not in SAFE_METHODS:
        result.update(ok=True, skipped=True,
                      error=None, msg="not sent in check mode: %s is not a read-only method" % spec["method"])
        return result
    state = {"attempts": 0, "status": None, "latency_ms": None, "resolved_address": None}
    started = clock()

    def one_attempt():
        remaining = spec["deadline"] - (clock() - started)
        return attempt(spec, max(MIN_ATTEMPT_TIMEOUT, min(spec["timeout"], remaining)), state)

    try:
        document = call_with_retries(
            one_attempt,
            is_transient=lambda exc: isinstance(exc, AttemptFailed) and exc.transient,
            timeout=spec["deadline"], max_attempts=spec["max_attempts"],
            base=backoff_base, cap=backoff_max, sleep=sleep, clock=clock,
        )
    except RetryBudgetExceeded as exc:
        result["error"] = "%s (gave up after %d attempt%s in %.1fs)" % (
            exc.last_error, exc.attempts, "" if exc.attempts == 1 else "s", clock() - started)
    except AttemptFailed as exc:
        result["error"] = "%s (not retried)" % exc
    except Exception as exc:  # noqa: BLE001 # pylint: disable=broad-except
        # Never let one endpoint's surprise hide the others' results.
        result["error"] = "unexpected %s: %s" % (type(exc).__name__, exc)
    else:
        result["ok"] = True
        result["captured"] = dict((path, lookup_json(document, path)) for path in spec["capture"])
    result.update(
        status=state["status"],
        latency_ms=state["latency_ms"],
        attempts=state["attempts"],
        resolved_address=state["resolved_address"],
        elapsed_ms=round((clock() - started) * 1000, 1),
    )
    return result


def run_checks(specs, concurrency=16, **kwargs):
    """Check every endpoint concurrently; results come back in the order of ``specs``."""
    if not specs:
        return []
    workers = max(1, min(int(concurrency), len(specs)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda spec: check_endpoint(spec, **kwargs), specs))


def summary_message(results):
    """One line naming every failing endpoint and why, or saying all passed."""
    failed = [r for r in results if not r["ok"]]
    if not failed:
        skipped = sum(1 for r in results if r.get("skipped"))
        text = "all %d endpoints passed" % len(results)
        return text + (" (%d not sent in check mode)" % skipped if skipped else "")
    return "%d of %d endpoints failed: %s" % (
        len(failed), len(results), "; ".join("%s: %s" % (r["name"], r["error"]) for r in failed))
