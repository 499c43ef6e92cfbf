# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation and replacement planning for the aws_infra role, with no AWS call.

Everything here is pure: it takes the desired per-region specification (and, for the
replacement check, what read-only discovery found) and returns errors or a plan. The
module `infra_validate` is a thin wrapper; the unit tests call these functions directly.

A region spec (one per inventory host) looks like::

    {"name": "east", "aws_region": "us-east-1", "role": "primary", "environment": "production",
     "vpc_cidr": "10.10.0.0/16",
     "subnets": [{"name": "private-a", "cidr": "10.10.1.0/24", "az": "us-east-1a", "tier": "private"}],
     "db": {"engine_version": "15.7", "backup_retention": 7, "deletion_protection": true}}
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

ENVIRONMENTS = ("dev", "staging", "production")
ROLES = ("primary", "dr")
TIERS = ("public", "private")
# AWS region names: us-east-1, eu-central-2, ap-southeast-3, us-gov-west-1, ca-west-1 ...
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-(north|south|east|west|central|northeast|northwest|"
                       r"southeast|southwest)-[1-9]$")
ENGINE_VERSION_RE = re.compile(r"^(\d+)(\.\d+)?$")
PRODUCTION_MIN_BACKUP_RETENTION = 7
MAX_BACKUP_RETENTION = 35
# AWS limits for a VPC's (and a subnet's) IPv4 block.
MIN_PREFIX, MAX_PREFIX = 16, 28

# Properties whose change replaces the resource (AWS cannot modify them in place).
REPLACEMENT_PROPERTIES = {
    "vpc": ("cidr_block",),
    "subnet": ("cidr", "az"),
    "db": ("engine", "master_username", "storage_encrypted", "db_name"),
}
# Replacements the role automates with create-before-destroy; the others are always refused.
AUTOMATED_REPLACEMENTS = ("subnet",)


class InfraValidationError(Exception):
    """All problems found, one message per line, so an operator fixes them in one go."""

    def __init__(self, errors):
        self.errors = list(errors)
        super(InfraValidationError, self).__init__("; ".join(self.errors))


def _network(value, what):
    """Parse an IPv4 CIDR; return (network, error)."""
    if not isinstance(value, str) or "/" not in value:
        return None, "%s: %r is not a CIDR block (expected a.b.c.d/nn)" % (what, value)
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        return None, "%s: %r is not a valid CIDR block (%s)" % (what, value, exc)
    if network.version != 4:
        return None, "%s: %r is not an IPv4 CIDR block" % (what, value)
    if not MIN_PREFIX <= network.prefixlen <= MAX_PREFIX:
        return None, "%s: %r has prefix /%d, AWS allows /%d to /%d" % (
            what, value, network.prefixlen, MIN_PREFIX, MAX_PREFIX)
    return network, None


def parse_engine_version(value):
    """'15.7' -> (15, 7); '16' -> (16, None); None when malformed."""
    match = ENGINE_VERSION_RE.match(str(value or ""))
    if not match:
        return None
    minor = match.group(2)
    return int(match.group(1)), (int(minor[1:]) if minor else None)


def validate_region(spec, engine_min=13, engine_max=17):
    """Errors for one region spec (no cross-region rules)."""
    errors = []
    name = spec.get("name") or "?"
    where = "region %s" % name

    environment = spec.get("environment")
    if environment not in ENVIRONMENTS:
        errors.append("%s: environment %r is not one of %s" % (where, environment, ", ".join(ENVIRONMENTS)))
    aws_region = spec.get("aws_region")
    if not isinstance(aws_region, str) or not REGION_RE.match(aws_region):
        errors.append("%s: aws_region %r is not an AWS region name (like us-east-1)" % (where, aws_region))
        aws_region = None
    if spec.get("role") not in ROLES:
        errors.append("%s: role %r is not one of %s" % (where, spec.get("role"), ", ".join(ROLES)))

    vpc, error = _network(spec.get("vpc_cidr"), "%s: vpc_cidr" % where)
    if error:
        errors.append(error)

    subnets = spec.get("subnets") or []
    if not subnets:
        errors.append("%s: no subnets given" % where)
    seen = []
    names = set()
    private_azs = set()
    for index, subnet in enumerate(subnets):
        label = "%s: subnet %s" % (where, subnet.get("name") or "#%d" % index)
        if subnet.get("name") in names:
            errors.append("%s: duplicate subnet name" % label)
        names.add(subnet.get("name"))
        if subnet.get("tier") not in TIERS:
            errors.append("%s: tier %r is not one of %s" % (label, subnet.get("tier"), ", ".join(TIERS)))
        az = subnet.get("az")
        if aws_region and not (isinstance(az, str) and re.match(r"^%s[a-z]$" % re.escape(aws_region), az)):
            errors.append("%s: availability zone %r is not in %s" % (label, az, aws_region))
        if subnet.get("tier") == "private":
            private_azs.add(az)
        network, error = _network(subnet.get("cidr"), "%s: cidr" % label)
        if error:
            errors.append(error)
            continue
        if vpc is not None and not network.subnet_of(vpc):
            errors.append("%s: cidr %s is not inside the VPC %s" % (label, network, vpc))
        for other_label, other in seen:
            if network.overlaps(other):
                errors.append("%s: cidr %s overlaps %s (%s)" % (label, network, other_label, other))
        seen.append((subnet.get("name") or "#%d" % index, network))
    if subnets and len(private_azs) < 2:
        errors.append("%s: private subnets must span at least 2 availability zones (RDS needs 2), got %d"
                      % (where, len(private_azs)))

    db = spec.get("db") or {}
    version = parse_engine_version(db.get("engine_version"))
    if version is None:
        errors.append("%s: engine_version %r is not a PostgreSQL version (like 15.7)"
                      % (where, db.get("engine_version")))
    elif not engine_min <= version[0] <= engine_max:
        errors.append("%s: engine_version %s is outside the supported range %d to %d"
                      % (where, db.get("engine_version"), engine_min, engine_max))
    retention = db.get("backup_retention")
    if not isinstance(retention, int) or isinstance(retention, bool) or not 0 <= retention <= MAX_BACKUP_RETENTION:
        errors.append("%s: backup_retention %r must be a whole number of days from 0 to %d"
                      % (where, retention, MAX_BACKUP_RETENTION))
    elif environment == "production" and retention < PRODUCTION_MIN_BACKUP_RETENTION:
        errors.append("%s: backup_retention %d is below the production minimum of %d days"
                      % (where, retention, PRODUCTION_MIN_BACKUP_RETENTION))
    if environment == "production" and db.get("deletion_protection") is not True:
        errors.append("%s: deletion_protection must be on in production" % where)
    return errors


def validate_stack(specs, engine_min=13, engine_max=17):
    """Errors for every region plus the cross-region rules; [] when the stack is valid."""
    errors = []
    if engine_min > engine_max:
        errors.append("engine version range is empty: %d > %d" % (engine_min, engine_max))
    if not specs:
        errors.append("no regions to provision")
        return errors
    for spec in specs:
        errors.extend(validate_region(spec, engine_min, engine_max))

    environments = sorted(set(str(spec.get("environment")) for spec in specs))
    if len(environments) > 1:
        errors.append("all regions must share one environment, got %s" % ", ".join(environments))
    primaries = [spec.get("name") for spec in specs if spec.get("role") == "primary"]
    if len(primaries) != 1:
        errors.append("exactly one region must be primary, got %d (%s)"
                      % (len(primaries), ", ".join(map(str, primaries))))
    aws_regions = [spec.get("aws_region") for spec in specs]
    for aws_region in sorted(set(r for r in aws_regions if aws_regions.count(r) > 1 and r)):
        errors.append("aws_region %s is used by more than one region" % aws_region)

    networks = []
    for spec in specs:
        network, error = _network(spec.get("vpc_cidr"), "")
        if not error:
            networks.append((spec.get("name"), network))
    for index, (name, network) in enumerate(networks):
        for other_name, other in networks[index + 1:]:
            if network.overlaps(other):
                errors.append("VPC CIDRs overlap: region %s %s and region %s %s" % (name, network, other_name, other))
    return errors


def protected_resources(spec):
    """What `state: absent` must not delete without an explicit override, for one region."""
    protected = []
    db = spec.get("db") or {}
    if db.get("deletion_protection") or spec.get("environment") == "production":
        protected.append("database (deletion protection)")
    if spec.get("environment") == "production":
        protected.append("documents bucket (production data)")
    return protected


def check_teardown(specs, allow_protected_delete):
    """Errors when `state: absent` would delete protected resources without the override."""
    if allow_protected_delete:
        return []
    errors = []
    for spec in specs:
        protected = protected_resources(spec)
        if protected:
            errors.append("region %s: refusing to delete protected resources (%s); set "
                          "aws_infra_allow_protected_delete=true to delete them"
                          % (spec.get("name"), ", ".join(protected)))
    return errors


def normalize_current(raw):
    """Shape raw *_info results into what find_replacements compares.

    `raw` = {"vpcs": ec2_vpc_net_info.vpcs, "subnets": ec2_vpc_subnet_info.subnets,
             "db_instances": rds_instance_info.instances}; missing keys mean "nothing found".
    Subnets are named by their `cloudphoenix:subnet` tag.
    """
    raw = raw or {}
    vpcs = raw.get("vpcs") or []
    vpc = {"cidr_block": vpcs[0].get("cidr_block")} if vpcs else None
    subnets = []
    for subnet in raw.get("subnets") or []:
        tags = subnet.get("tags") or {}
        subnets.append({"id": subnet.get("subnet_id") or subnet.get("id"), "name": tags.get("cloudphoenix:subnet"),
                        "cidr": subnet.get("cidr_block"), "az": subnet.get("availability_zone")})
    instances = raw.get("db_instances") or []
    db = None
    if instances:
        instance = instances[0]
        db = {"engine": instance.get("engine"), "master_username": instance.get("master_username"),
              "storage_encrypted": instance.get("storage_encrypted"), "db_name": instance.get("db_name")}
    return {"vpc": vpc, "subnets": subnets, "db": db}


def find_replacements(spec, current):
    """Compare one region's desired spec with what discovery found.

    `current` = {"vpc": {"cidr_block": ...} | None,
                 "subnets": [{"id", "name", "cidr", "az"}],
                 "db": {"engine", "master_username", "storage_encrypted", "db_name"} | None}
    Returns a list of {"resource", "name", "property", "current", "desired"} and the subnets
    ({"id", "cidr"}) that create-before-destroy removes once the new ones are wired up.
    """
    current = current or {}
    replacements = []
    retired_subnets = []
    vpc = current.get("vpc")
    if vpc and vpc.get("cidr_block") and vpc["cidr_block"] != spec.get("vpc_cidr"):
        replacements.append({"resource": "vpc", "name": spec.get("name"), "property": "cidr_block",
                             "current": vpc["cidr_block"], "desired": spec.get("vpc_cidr")})
    desired_by_name = dict((subnet.get("name"), subnet) for subnet in spec.get("subnets") or [])
    desired_cidrs = set(subnet.get("cidr") for subnet in spec.get("subnets") or [])
    for existing in current.get("subnets") or []:
        wanted = desired_by_name.get(existing.get("name"))
        if wanted is not None:
            for prop in REPLACEMENT_PROPERTIES["subnet"]:
                if existing.get(prop) != wanted.get(prop):
                    replacements.append({"resource": "subnet", "name": existing.get("name"), "property": prop,
                                         "current": existing.get(prop), "desired": wanted.get(prop)})
        if existing.get("cidr") not in desired_cidrs:
            retired_subnets.append({"id": existing.get("id"), "cidr": existing.get("cidr")})
    db = current.get("db")
    desired_db = spec.get("db") or {}
    if db:
        for prop in REPLACEMENT_PROPERTIES["db"]:
            if prop in desired_db and db.get(prop) is not None and db.get(prop) != desired_db.get(prop):
                replacements.append({"resource": "db", "name": spec.get("name"), "property": prop,
                                     "current": db.get(prop), "desired": desired_db.get(prop)})
    return replacements, retired_subnets


def check_replacements(spec, replacements, allow_replacement):
    """Errors for replacements the role must not carry out."""
    errors = []
    for item in replacements:
        what = "region %s: %s %s: %s %r -> %r forces replacement" % (
            spec.get("name"), item["resource"], item["name"], item["property"], item["current"], item["desired"])
        if item["resource"] not in AUTOMATED_REPLACEMENTS:
            errors.append("%s; this is never automated (it would move or lose data): migrate by hand" % what)
        elif spec.get("environment") == "production" and not allow_replacement:
            errors.append("%s; refused in production unless aws_infra_allow_replacement=true "
                          "(then create-before-destroy)" % what)
    return errors
