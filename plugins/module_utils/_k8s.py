# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Semantic checks for the Kubernetes roles (k8s_policies, k8s_workloads).

The roles' argument specs check types; these functions check meaning, before any manifest is
rendered or any API call is made: quantities that the API server would reject ("500x"),
replica bounds (min > max), a PodDisruptionBudget that blocks every voluntary eviction, a
ResourceQuota too small for the pods it must admit, malformed CIDRs, a termination grace
period shorter than the preStop drain plus gunicorn's graceful timeout.

Every function returns a list of human-readable problems (empty = fine) instead of raising,
so a role can report all of them at once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re
from decimal import Decimal, InvalidOperation

# Kubernetes resource.Quantity grammar (k8s.io/apimachinery/pkg/api/resource/quantity.go):
# <signedNumber><suffix>, suffix one of binarySI (Ki..Ei), decimalSI (m, k, M..E) or e<exp>.
_QUANTITY_RE = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {"m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
            "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18}
_DNS1035_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1123_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_PERCENT_RE = re.compile(r"^([0-9]+)%$")
_RESOURCES = ("cpu", "memory")

# A rollout with maxSurge 1 (the workloads role's strategy) runs one extra pod per service.
ROLLOUT_SURGE_PODS = 1


def parse_quantity(value):
    """Return a Kubernetes quantity as a Decimal in base units (cores, bytes); ValueError if malformed."""
    if isinstance(value, bool) or value is None:
        raise ValueError("%r is not a Kubernetes quantity" % (value,))
    text = str(value).strip()
    match = _QUANTITY_RE.match(text)
    if not match:
        raise ValueError("%r is not a Kubernetes quantity (expected e.g. 250m, 1, 512Mi, 1Gi)" % (value,))
    try:
        number = Decimal(match.group("num"))
    except InvalidOperation:  # pragma: no cover - the regex only lets valid numbers through
        raise ValueError("%r is not a Kubernetes quantity" % (value,)) from None
    suffix = match.group("suffix") or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    if suffix:
        return number * (Decimal(10) ** int(suffix[1:]))
    return number


def _quantity(problems, where, value):
    """Parse, record a problem for malformed or negative quantities, return None then."""
    try:
        parsed = parse_quantity(value)
    except ValueError as exc:
        problems.append("%s: %s" % (where, exc))
        return None
    if parsed < 0:
        problems.append("%s: %r must not be negative" % (where, value))
        return None
    return parsed


def _int_or_percent(value):
    """(kind, number) for a PDB value: ('int', 2) or ('percent', 50); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("%r is neither an integer nor a percentage" % (value,))
    if isinstance(value, int):
        return "int", value
    text = str(value).strip()
    if text.isdigit():
        return "int", int(text)
    match = _PERCENT_RE.match(text)
    if match:
        return "percent", int(match.group(1))
    raise ValueError("%r is neither an integer nor a percentage like '50%%'" % (value,))


def service_problems(services):
    """Checks shared by both roles: names, ports, replica bounds, resources."""
    problems = []
    names = [svc.get("name") for svc in services]
    if not services:
        problems.append("services: at least one service is required")
    for name in sorted(set(n for n in names if names.count(n) > 1)):
        problems.append("services: name %r is used more than once" % (name,))
    for svc in services:
        name = svc.get("name") or "?"
        where = "service %s" % name
        if not _DNS1035_RE.match(str(svc.get("name") or "")):
            problems.append("%s: name must be a DNS-1035 label (lower case letters, digits, '-', "
                            "starting with a letter, at most 63 characters)" % where)
        port = svc.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            problems.append("%s: port %r is not between 1 and 65535" % (where, port))
        low, high, standby = svc.get("min_replicas"), svc.get("max_replicas"), svc.get("standby_replicas")
        if isinstance(low, int) and low < 1:
            problems.append("%s: min_replicas (%d) must be at least 1" % (where, low))
        if isinstance(low, int) and isinstance(high, int) and low > high:
            problems.append("%s: min_replicas (%d) is greater than max_replicas (%d)" % (where, low, high))
        if isinstance(standby, int) and standby < 1:
            problems.append("%s: standby_replicas (%d) must be at least 1 (a HorizontalPodAutoscaler "
                            "cannot scale to zero; remove the service from the DR region instead)" % (where, standby))
        if isinstance(standby, int) and isinstance(high, int) and standby > high:
            problems.append("%s: standby_replicas (%d) is greater than max_replicas (%d)" % (where, standby, high))
        for peer in svc.get("peers") or []:
            if peer not in names:
                problems.append("%s: peer %r is not one of the services (%s)"
                                % (where, peer, ", ".join(map(str, names))))
            elif peer == svc.get("name"):
                problems.append("%s: a service cannot list itself as a peer" % where)
        requests = svc.get("requests") or {}
        limits = svc.get("limits") or {}
        for resource in _RESOURCES:
            req = lim = None
            if resource in requests:
                req = _quantity(problems, "%s: requests.%s" % (where, resource), requests[resource])
            else:
                problems.append("%s: requests.%s is required (the quota and the autoscaler need it)"
                                % (where, resource))
            if resource in limits:
                lim = _quantity(problems, "%s: limits.%s" % (where, resource), limits[resource])
            if req is not None and lim is not None and req > lim:
                problems.append("%s: requests.%s (%s) is greater than limits.%s (%s)"
                                % (where, resource, requests[resource], resource, limits[resource]))
    return problems


def _pdb_problems(svc, floor):
    """A PDB must exist in exactly one form and leave at least one pod evictable at `floor` replicas."""
    where = "service %s" % svc.get("name")
    min_available = svc.get("pdb_min_available")
    max_unavailable = svc.get("pdb_max_unavailable")
    if (min_available is None) == (max_unavailable is None):
        return ["%s: set exactly one of pdb_min_available and pdb_max_unavailable" % where]
    key, value = ("pdb_min_available", min_available) if min_available is not None else \
        ("pdb_max_unavailable", max_unavailable)
    try:
        kind, number = _int_or_percent(value)
    except ValueError as exc:
        return ["%s: %s %s" % (where, key, exc)]
    blocks = "would block every voluntary eviction (node drains and cluster upgrades would hang)"
    if kind == "percent" and number > 100:
        return ["%s: %s %r is more than 100%%" % (where, key, value)]
    if key == "pdb_max_unavailable" and number == 0:
        return ["%s: pdb_max_unavailable %r %s" % (where, value, blocks)]
    if key == "pdb_min_available":
        # The controller rounds a percentage of minAvailable up.
        needed = number if kind == "int" else -(-number * floor // 100)
        if needed >= floor:
            return ["%s: pdb_min_available %r >= the smallest replica count (%d) %s"
                    % (where, value, floor, blocks)]
    return []


def _cidr_problems(where, cidrs):
    problems = []
    if not isinstance(cidrs, list):
        return ["%s: expected a list of CIDRs, got %r" % (where, cidrs)]
    for cidr in cidrs:
        try:
            ipaddress.ip_network(str(cidr), strict=True)
        except ValueError as exc:
            problems.append("%s: %r is not a valid CIDR (%s)" % (where, cidr, exc))
        else:
            if "/" not in str(cidr):
                problems.append("%s: %r is not a valid CIDR (write the prefix length, e.g. %s/32)"
                                % (where, cidr, cidr))
    return problems


def _port_problems(where, ports):
    problems = []
    for port in ports or []:
        number = port.get("port") if isinstance(port, dict) else port
        protocol = port.get("protocol", "TCP") if isinstance(port, dict) else "TCP"
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
            problems.append("%s: port %r is not between 1 and 65535" % (where, number))
        if protocol not in ("TCP", "UDP", "SCTP"):
            problems.append("%s: protocol %r is not TCP, UDP or SCTP" % (where, protocol))
    return problems


def policy_problems(spec):
    """Everything k8s_policies checks. `spec` holds the role's variables without the prefix."""
    problems = []
    services = spec.get("services") or []
    namespace = str(spec.get("namespace") or "")
    if not _DNS1123_RE.match(namespace):
        problems.append("namespace %r is not a DNS-1123 label (lower case letters, digits, '-')" % namespace)
    psa_version = str(spec.get("psa_version") or "")
    if not re.match(r"^(latest|v1\.[0-9]+)$", psa_version):
        problems.append("psa_version %r must be 'latest' or a Kubernetes minor version like 'v1.31'" % psa_version)
    problems.extend(service_problems(services))

    standby = spec.get("region_role") == "standby"
    for svc in services:
        low = svc.get("standby_replicas") if standby else svc.get("min_replicas")
        if isinstance(low, int) and low >= 1:
            problems.extend(_pdb_problems(svc, low))
        for key in ("cpu_utilization", "memory_utilization"):
            value = svc.get(key)
            if value is not None and (not isinstance(value, int) or value < 1):
                problems.append("service %s: %s %r must be a positive percentage of the request"
                                % (svc.get("name"), key, value))

    ingress = spec.get("ingress_namespace")
    if not _DNS1123_RE.match(str(ingress or "")):
        problems.append("ingress_namespace %r is not a DNS-1123 label" % (ingress,))
    monitoring = spec.get("monitoring_namespace")
    if monitoring and not _DNS1123_RE.match(str(monitoring)):
        problems.append("monitoring_namespace %r is not a DNS-1123 label" % (monitoring,))
    egress = spec.get("egress") or {}
    for target in ("dns", "database", "object_storage"):
        rule = egress.get(target) or {}
        where = "egress.%s" % target
        problems.extend(_cidr_problems("%s.cidrs" % where, rule.get("cidrs", [])))
        problems.extend(_port_problems("%s.ports" % where, rule.get("ports", [])))
        if target != "dns" and not rule.get("cidrs"):
            problems.append("%s.cidrs: at least one CIDR is required (egress is denied by default)" % where)
        if not rule.get("ports"):
            problems.append("%s.ports: at least one port is required" % where)
        if any(str(c) in ("0.0.0.0/0", "::/0") for c in rule.get("cidrs", []) or []):
            problems.append("%s.cidrs: 0.0.0.0/0 or ::/0 would allow egress everywhere; list the real "
                            "endpoints" % where)

    problems.extend(_quota_problems(spec.get("quota") or {}, services))
    problems.extend(_limit_range_problems(spec.get("limit_range") or {}))
    problems.extend(check_limits_against_range(services, spec.get("limit_range") or {}))
    return problems


def _quota_problems(quota, services):
    """The quota must admit every service at max replicas plus one surge pod each."""
    problems = []
    hard = {}
    for key, value in sorted(quota.items()):
        if key == "pods":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append("quota.pods %r must be a positive integer" % (value,))
            else:
                hard[key] = Decimal(value)
            continue
        parsed = _quantity(problems, "quota.%s" % key, value)
        if parsed is not None:
            hard[key] = parsed
    pods_needed = 0
    needed = {}
    for svc in services:
        high = svc.get("max_replicas")
        if not isinstance(high, int):
            continue
        count = high + ROLLOUT_SURGE_PODS
        pods_needed += count
        for section in ("requests", "limits"):
            for resource in _RESOURCES:
                value = (svc.get(section) or {}).get(resource)
                if value is None:
                    continue
                try:
                    parsed = parse_quantity(value)
                except ValueError:
                    continue  # already reported by service_problems
                key = "%s.%s" % (section, resource)
                needed[key] = needed.get(key, Decimal(0)) + parsed * count
    if "pods" in hard and hard["pods"] < pods_needed:
        problems.append("quota.pods (%s) is smaller than the %d pods the services need at max_replicas "
                        "plus one rollout surge pod each" % (quota["pods"], pods_needed))
    for key, total in sorted(needed.items()):
        if key in hard and hard[key] < total:
            problems.append("quota.%s (%s) is smaller than the sum of %s over all services at max_replicas "
                            "plus one rollout surge pod each (%s)" % (key, quota[key], key, _fmt(key, total)))
    return problems


def _fmt(key, value):
    if key.endswith("cpu"):
        return "%sm" % (value * 1000).normalize().to_integral_value()
    return "%sMi" % (value / _BINARY["Mi"]).quantize(Decimal("0.01")).normalize()


def _limit_range_problems(limit_range):
    problems = []
    parsed = {}
    for section in ("default", "default_request", "max"):
        for resource, value in sorted((limit_range.get(section) or {}).items()):
            parsed[(section, resource)] = _quantity(problems, "limit_range.%s.%s" % (section, resource), value)
    for resource in _RESOURCES:
        req, lim, top = (parsed.get((s, resource)) for s in ("default_request", "default", "max"))
        if req is not None and lim is not None and req > lim:
            problems.append("limit_range: default_request.%s is greater than default.%s" % (resource, resource))
        if lim is not None and top is not None and lim > top:
            problems.append("limit_range: default.%s is greater than max.%s" % (resource, resource))
    return problems


def check_limits_against_range(services, limit_range):
    """Container limits above the LimitRange max would be rejected at admission."""
    problems = []
    for svc in services:
        for resource in _RESOURCES:
            top = (limit_range.get("max") or {}).get(resource)
            value = (svc.get("limits") or {}).get(resource)
            if top is None or value is None:
                continue
            try:
                if parse_quantity(value) > parse_quantity(top):
                    problems.append("service %s: limits.%s (%s) is above limit_range.max.%s (%s)"
                                    % (svc.get("name"), resource, value, resource, top))
            except ValueError:
                continue  # reported elsewhere
    return problems


def workload_problems(spec):
    """Everything k8s_workloads checks. `spec` holds the role's variables without the prefix."""
    problems = []
    namespace = str(spec.get("namespace") or "")
    if not _DNS1123_RE.match(namespace):
        problems.append("namespace %r is not a DNS-1123 label (lower case letters, digits, '-')" % namespace)
    services = spec.get("services") or []
    problems.extend(service_problems(services))
    for svc in services:
        where = "service %s" % svc.get("name")
        image = str(svc.get("image") or "")
        if not image:
            problems.append("%s: image is required" % where)
        elif ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
            problems.append("%s: image %r has neither a tag nor a digest" % (where, image))
        elif image.endswith(":latest"):
            problems.append("%s: image %r uses the mutable 'latest' tag" % (where, image))
        if image and "@" not in image and spec.get("require_image_digest"):
            problems.append("%s: image %r is not pinned by digest (require_image_digest is set)" % (where, image))
        if "@" in image and not re.search(r"@sha256:[0-9a-f]{64}$", image):
            problems.append("%s: image %r has a malformed digest (expected @sha256:<64 hex>)" % (where, image))
        for key in sorted(svc.get("config") or {}):
            if not _ENV_NAME_RE.match(str(key)):
                problems.append("%s: config key %r is not a valid environment variable name" % (where, key))
        for key in svc.get("secret_keys") or []:
            if not _ENV_NAME_RE.match(str(key)):
                problems.append("%s: secret key %r is not a valid environment variable name" % (where, key))
        if svc.get("secret_keys") and not svc.get("secret_name"):
            problems.append("%s: secret_keys are set but secret_name is not" % where)
    for key in ("liveness_path", "readiness_path"):
        if not str(spec.get(key) or "").startswith("/"):
            problems.append("%s %r must be an absolute HTTP path like /healthz" % (key, spec.get(key)))
    sleep, graceful, grace = spec.get("prestop_sleep_seconds"), spec.get("graceful_timeout"), \
        spec.get("termination_grace_period_seconds")
    if all(isinstance(v, int) for v in (sleep, graceful, grace)):
        if sleep < 1:
            problems.append("prestop_sleep_seconds (%d) must be at least 1: endpoints need time to drop the pod"
                            % sleep)
        if grace < sleep + graceful:
            problems.append("termination_grace_period_seconds (%d) is shorter than prestop_sleep_seconds (%d) + "
                            "graceful_timeout (%d): the kubelet would SIGKILL gunicorn mid-drain"
                            % (grace, sleep, graceful))
    region = str(spec.get("region") or "")
    if not re.match(r"^[a-z][a-z0-9-]{0,31}$", region):
        problems.append("region %r must be a short lower-case name like 'east' (the services reject others)" % region)
    hosts = spec.get("database_hosts") or []
    if not hosts:
        problems.append("database_hosts: at least one PostgreSQL host is required")
    for host in hosts:
        if not re.match(r"^[A-Za-z0-9]([-.A-Za-z0-9:]*[A-Za-z0-9])?$", str(host)):
            problems.append("database_hosts: %r is not a host name or address" % (host,))
    port = spec.get("database_port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        problems.append("database_port %r is not between 1 and 65535" % (port,))
    topology_key = str(spec.get("topology_key") or "")
    if not topology_key:
        problems.append("topology_key must not be empty")
    return problems
