"""Unit tests for the aws_infra validation and replacement logic (pure functions, no AWS)."""

from __future__ import annotations

import copy

import pytest
from ansible_collections.cloudphoenix.stack.plugins.module_utils._infra_validate import (
    check_replacements,
    check_teardown,
    find_replacements,
    normalize_current,
    parse_engine_version,
    validate_region,
    validate_stack,
)


def region(name="east", aws_region="us-east-1", role="primary", cidr="10.10.0.0/16", environment="production"):
    octet = cidr.split(".")[1]
    return {
        "name": name, "aws_region": aws_region, "role": role, "environment": environment, "vpc_cidr": cidr,
        "subnets": [
            {"name": "public-a", "cidr": f"10.{octet}.0.0/24", "az": f"{aws_region}a", "tier": "public"},
            {"name": "private-a", "cidr": f"10.{octet}.1.0/24", "az": f"{aws_region}a", "tier": "private"},
            {"name": "private-b", "cidr": f"10.{octet}.2.0/24", "az": f"{aws_region}b", "tier": "private"},
        ],
        "db": {"engine_version": "15.7", "backup_retention": 7, "deletion_protection": True},
    }


def stack():
    return [region(), region("west", "us-west-2", "dr", "10.20.0.0/16")]


def test_valid_stack_has_no_errors():
    assert validate_stack(stack()) == []


@pytest.mark.parametrize("aws_region", ["us-east", "US-EAST-1", "useast1", "us-east-1a", "mars-east-1", ""])
def test_region_format(aws_region):
    spec = region(aws_region=aws_region)
    assert any("is not an AWS region name" in error for error in validate_region(spec))


@pytest.mark.parametrize("aws_region", ["us-gov-west-1", "ap-southeast-3", "eu-central-2", "ca-west-1"])
def test_region_format_accepts_real_names(aws_region):
    spec = region(aws_region=aws_region)
    assert validate_region(spec) == []


@pytest.mark.parametrize(("cidr", "message"), [
    ("10.10.0.0", "is not a CIDR block"),
    ("10.10.0.1/16", "host bits set"),
    ("10.300.0.0/16", "is not a valid CIDR block"),
    ("10.0.0.0/8", "AWS allows /16 to /28"),
])
def test_vpc_cidr_syntax(cidr, message):
    spec = region()
    spec["vpc_cidr"] = cidr
    assert any(message in error and "vpc_cidr" in error for error in validate_region(spec))


def test_subnet_outside_vpc():
    spec = region()
    spec["subnets"][1]["cidr"] = "10.99.1.0/24"
    errors = validate_region(spec)
    assert errors == ["region east: subnet private-a: cidr 10.99.1.0/24 is not inside the VPC 10.10.0.0/16"]


def test_subnets_overlap_each_other():
    spec = region()
    spec["subnets"][2]["cidr"] = "10.10.1.128/25"
    assert any("overlaps private-a" in error for error in validate_region(spec))


def test_subnet_az_outside_region():
    spec = region()
    spec["subnets"][2]["az"] = "us-west-2b"
    assert any("availability zone 'us-west-2b' is not in us-east-1" in error for error in validate_region(spec))


def test_private_subnets_need_two_azs():
    spec = region()
    spec["subnets"][2]["az"] = "us-east-1a"
    assert any("at least 2 availability zones" in error for error in validate_region(spec))


def test_vpc_cidrs_of_regions_must_not_overlap():
    specs = stack()
    specs[1] = region("west", "us-west-2", "dr", "10.10.0.0/16")
    errors = validate_stack(specs)
    assert "VPC CIDRs overlap: region east 10.10.0.0/16 and region west 10.10.0.0/16" in errors


@pytest.mark.parametrize(("version", "ok"), [("15.7", True), ("13", True), ("17.2", True), ("12.19", False),
                                              ("18.0", False), ("fifteen", False), ("15.7.1", False)])
def test_engine_version_range(version, ok):
    spec = region()
    spec["db"]["engine_version"] = version
    errors = validate_region(spec, engine_min=13, engine_max=17)
    if ok:
        assert errors == []
    else:
        assert len(errors) == 1
        assert "engine_version" in errors[0]


def test_parse_engine_version():
    assert parse_engine_version("15.7") == (15, 7)
    assert parse_engine_version("16") == (16, None)
    assert parse_engine_version(None) is None


@pytest.mark.parametrize("environment", ["prod", "Production", "", None, "test"])
def test_environment_must_be_known(environment):
    spec = region(environment=environment)
    assert any("is not one of dev, staging, production" in error for error in validate_region(spec))


def test_production_backup_retention_minimum():
    spec = region()
    spec["db"]["backup_retention"] = 3
    assert validate_region(spec) == ["region east: backup_retention 3 is below the production minimum of 7 days"]
    dev = region(environment="dev")
    dev["db"]["backup_retention"] = 3
    assert validate_region(dev) == []


def test_production_requires_deletion_protection():
    spec = region()
    spec["db"]["deletion_protection"] = False
    assert validate_region(spec) == ["region east: deletion_protection must be on in production"]


def test_one_primary_and_distinct_regions_and_one_environment():
    specs = stack()
    specs[1]["role"] = "primary"
    specs[1]["aws_region"] = "us-east-1"
    for subnet in specs[1]["subnets"]:
        subnet["az"] = subnet["az"].replace("us-west-2", "us-east-1")
    specs[1]["environment"] = "staging"
    errors = validate_stack(specs)
    assert "exactly one region must be primary, got 2 (east, west)" in errors
    assert "aws_region us-east-1 is used by more than one region" in errors
    assert "all regions must share one environment, got production, staging" in errors


def test_teardown_refuses_protected_without_override():
    errors = check_teardown(stack(), allow_protected_delete=False)
    assert len(errors) == 2
    assert "refusing to delete protected resources (database (deletion protection)" in errors[0]
    assert check_teardown(stack(), allow_protected_delete=True) == []
    dev = [region(environment="dev")]
    dev[0]["db"]["deletion_protection"] = False
    assert check_teardown(dev, allow_protected_delete=False) == []


def test_find_replacements_subnet_cidr_change_and_retired_subnet():
    spec = region()
    current = {
        "vpc": {"cidr_block": "10.10.0.0/16"},
        "subnets": [
            {"id": "subnet-1", "name": "public-a", "cidr": "10.10.0.0/24", "az": "us-east-1a"},
            {"id": "subnet-2", "name": "private-a", "cidr": "10.10.9.0/24", "az": "us-east-1a"},
            {"id": "subnet-3", "name": "private-b", "cidr": "10.10.2.0/24", "az": "us-east-1b"},
        ],
        "db": {"engine": "postgres", "master_username": "phoenix"},
    }
    replacements, retired = find_replacements(spec, current)
    assert replacements == [{"resource": "subnet", "name": "private-a", "property": "cidr",
                             "current": "10.10.9.0/24", "desired": "10.10.1.0/24"}]
    assert retired == [{"id": "subnet-2", "cidr": "10.10.9.0/24"}]
    errors = check_replacements(spec, replacements, allow_replacement=False)
    assert len(errors) == 1
    assert "refused in production unless aws_infra_allow_replacement=true" in errors[0]
    assert check_replacements(spec, replacements, allow_replacement=True) == []
    dev = copy.deepcopy(spec)
    dev["environment"] = "dev"
    assert check_replacements(dev, replacements, allow_replacement=False) == []


def test_vpc_and_db_replacements_are_never_automated():
    spec = region()
    spec["db"]["master_username"] = "phoenix"
    current = {"vpc": {"cidr_block": "10.11.0.0/16"}, "subnets": [],
               "db": {"engine": "postgres", "master_username": "admin"}}
    replacements, _ = find_replacements(spec, current)
    assert {(item["resource"], item["property"]) for item in replacements} == {
        ("vpc", "cidr_block"), ("db", "master_username")}
    errors = check_replacements(spec, replacements, allow_replacement=True)
    assert len(errors) == 2
    assert all("never automated" in error for error in errors)


def test_nothing_current_means_no_replacement():
    assert find_replacements(region(), None) == ([], [])


def test_normalize_current_from_info_module_results():
    raw = {
        "vpcs": [{"id": "vpc-1", "cidr_block": "10.10.0.0/16"}],
        "subnets": [{"subnet_id": "subnet-1", "cidr_block": "10.10.1.0/24", "availability_zone": "us-east-1a",
                     "tags": {"cloudphoenix:subnet": "private-a", "Name": "x"}}],
        "db_instances": [{"engine": "postgres", "master_username": "phoenix", "storage_encrypted": True,
                          "db_name": "phoenix"}],
    }
    assert normalize_current(raw) == {
        "vpc": {"cidr_block": "10.10.0.0/16"},
        "subnets": [{"id": "subnet-1", "name": "private-a", "cidr": "10.10.1.0/24", "az": "us-east-1a"}],
        "db": {"engine": "postgres", "master_username": "phoenix", "storage_encrypted": True, "db_name": "phoenix"},
    }
    assert normalize_current({}) == {"vpc": None, "subnets": [], "db": None}


def test_module_reports_every_error_and_changes_nothing():
    from tests.support.ansible import run_module

    specs = stack()
    specs[1]["vpc_cidr"] = "10.10.0.0/16"
    specs[0]["db"]["backup_retention"] = 1
    result = run_module("infra_validate", {"regions": specs}, check=True)
    assert result.failed
    assert result["msg"].startswith("aws_infra validation failed: ")
    assert "region east: backup_retention 1 is below the production minimum of 7 days" in result["errors"]
    assert "VPC CIDRs overlap: region east 10.10.0.0/16 and region west 10.10.0.0/16" in result["errors"]
    assert not result.changed


def test_module_plans_subnet_replacement_from_info_results():
    from tests.support.ansible import run_module

    current = {"east": {"vpcs": [{"cidr_block": "10.10.0.0/16"}], "db_instances": [], "subnets": [
        {"subnet_id": "subnet-9", "cidr_block": "10.10.9.0/24", "availability_zone": "us-east-1b",
         "tags": {"cloudphoenix:subnet": "private-b"}}]}}
    refused = run_module("infra_validate", {"regions": stack(), "current": current})
    assert refused.failed
    assert "refused in production unless aws_infra_allow_replacement=true" in refused["msg"]
    allowed = run_module("infra_validate", {"regions": stack(), "current": current, "allow_replacement": True})
    assert not allowed.failed, allowed.result
    assert allowed["replacements"] == [{"resource": "subnet", "name": "private-b", "property": "cidr",
                                        "current": "10.10.9.0/24", "desired": "10.10.2.0/24"}]
    assert allowed["retired_subnets"] == {"east": [{"id": "subnet-9", "cidr": "10.10.9.0/24"}], "west": []}
    assert not allowed.changed
