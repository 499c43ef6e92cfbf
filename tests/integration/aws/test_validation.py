"""Every validation rule stops the run before any AWS call.

The inventory points at a closed port: any AWS call would fail ("Unable to describe VPCs"), and the
first AWS task ("Discover ...") would show up in the output. Each case asserts its message, that
neither happened and that nothing changed. `test_closed_port_would_fail_loudly` shows that the
closed port really does catch an AWS call.
"""

from __future__ import annotations

import pytest

from tests.support.ansible import run_playbook

from .conftest import PROVISION, REPO_ROOT, TEARDOWN

FIRST_AWS_TASK = "TASK [cloudphoenix.stack.aws_infra : Discover"
CALL_FAILED = "Unable to describe VPCs"  # the first AWS call, failing on the closed port


def play(inventory, playbook=PROVISION, **extra_vars):
    return run_playbook(playbook, inventory=inventory.write(), extra_vars=extra_vars or None,
                        env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"})


def set_west(inventory, key, value):
    inventory.hosts["west"][key] = value


def overlap(inventory):
    west = inventory.hosts["west"]
    west["aws_infra_vpc_cidr"] = "10.10.0.0/16"
    for subnet in west["aws_infra_subnets"]:
        subnet["cidr"] = subnet["cidr"].replace("10.20.", "10.10.")


def production(inventory, **db):
    inventory.common["aws_infra_environment"] = "production"
    inventory.common.update(db)


CASES = {
    "region format": (lambda inv: set_west(inv, "aws_infra_region", "us-west"),
                      "region west: aws_region 'us-west' is not an AWS region name (like us-east-1)"),
    "CIDR syntax": (lambda inv: set_west(inv, "aws_infra_vpc_cidr", "10.20.0.0/33"),
                    "region west: vpc_cidr: '10.20.0.0/33' is not a valid CIDR block"),
    "CIDR host bits": (lambda inv: set_west(inv, "aws_infra_vpc_cidr", "10.20.0.1/16"),
                       "'10.20.0.1/16' is not a valid CIDR block (10.20.0.1/16 has host bits set)"),
    "regions overlap": (overlap, "VPC CIDRs overlap: region "),
    "subnet outside VPC": (lambda inv: inv.hosts["east"]["aws_infra_subnets"][3].update(cidr="10.99.2.0/24"),
                           "region east: subnet private-b: cidr 10.99.2.0/24 is not inside the VPC 10.10.0.0/16"),
    "subnet AZ outside region": (lambda inv: inv.hosts["east"]["aws_infra_subnets"][3].update(az="us-west-2b"),
                                 "region east: subnet private-b: availability zone 'us-west-2b' is not in us-east-1"),
    "engine version range": (lambda inv: inv.common.update(aws_infra_db_engine_version="12.19"),
                             "region east: engine_version 12.19 is outside the supported range 13 to 17"),
    "engine version format": (lambda inv: inv.common.update(aws_infra_db_engine_version="latest"),
                              "region east: engine_version 'latest' is not a PostgreSQL version (like 15.7)"),
    "environment": (lambda inv: inv.common.update(aws_infra_environment="prod"),
                    "value of aws_infra_environment must be one of: dev, staging, production, got: prod"),
    "production backup retention": (lambda inv: production(inv, aws_infra_db_backup_retention=3),
                                    "region east: backup_retention 3 is below the production minimum of 7 days"),
    "production deletion protection": (lambda inv: production(inv, aws_infra_db_deletion_protection=False),
                                       "region east: deletion_protection must be on in production"),
    "master password": (lambda inv: inv.common.pop("aws_infra_db_master_password"),
                        "region east: aws_infra_db_master_password must be set (8 characters or more)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_rule_stops_before_any_aws_call(dead_inventory, case):
    mutate, message = CASES[case]
    mutate(dead_inventory)
    run = play(dead_inventory)
    assert run.rc != 0
    assert message in run.stdout, run.stdout[-5000:]
    assert FIRST_AWS_TASK not in run.stdout
    assert CALL_FAILED not in run.stdout
    assert run.total("changed") == 0


def test_all_problems_are_reported_at_once(dead_inventory):
    set_west(dead_inventory, "aws_infra_vpc_cidr", "10.20.0.0/33")
    dead_inventory.common["aws_infra_db_engine_version"] = "18.1"
    run = play(dead_inventory)
    assert "vpc_cidr: '10.20.0.0/33' is not a valid CIDR block" in run.stdout
    assert "engine_version 18.1 is outside the supported range 13 to 17" in run.stdout
    assert FIRST_AWS_TASK not in run.stdout


def test_teardown_of_protected_stack_refused_before_any_aws_call(dead_inventory):
    production(dead_inventory)
    run = play(dead_inventory, TEARDOWN)
    assert run.rc != 0
    assert ("region east: refusing to delete protected resources (database (deletion protection), documents bucket "
            "(production data)); set aws_infra_allow_protected_delete=true to delete them") in run.stdout
    assert "TASK [cloudphoenix.stack.aws_infra : Read the database" not in run.stdout
    assert CALL_FAILED not in run.stdout


def test_closed_port_would_fail_loudly(dead_inventory):
    """The control case: a valid stack passes validation, then its first AWS call hits the closed port."""
    run = play(dead_inventory)
    assert run.rc != 0
    assert FIRST_AWS_TASK in run.stdout
    assert CALL_FAILED in run.stdout, run.stdout[-3000:]


def test_example_inventory_passes_validation(dead_inventory):
    """inventories/example-aws is a valid production stack: it gets past validation to the first AWS call."""
    run = run_playbook(PROVISION, inventory=REPO_ROOT / "inventories" / "example-aws",
                       extra_vars={"aws_infra_endpoint_url": dead_inventory.endpoint_url,
                                   "vault_aws_infra_db_master_password": "example-password-not-real"},
                       env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"})
    assert "aws_infra validation failed" not in run.stdout, run.stdout[-3000:]
    assert FIRST_AWS_TASK in run.stdout
    assert CALL_FAILED in run.stdout
