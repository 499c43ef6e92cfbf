"""The role's defaults and argument specs agree, and the RDS instances are derived from aws_infra's outputs."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from tests.integration.failover_platforms.conftest import run_steps
from tests.support.ansible import REPO_ROOT

ROLE = REPO_ROOT / "roles" / "failover"
SPECS = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
PLATFORM_VARIABLES = ("failover_database_platform", "failover_services_platform", "failover_source_region")


def test_every_default_has_a_spec_and_the_static_defaults_match():
    assert sorted(DEFAULTS) == sorted(SPECS)
    assert all(name.startswith("failover_") for name in DEFAULTS)
    for name, spec in SPECS.items():
        if "default" in spec:
            assert DEFAULTS[name] == spec["default"], name
    # the static defaults pass their own spec (templated ones are checked at run time by the role)
    static = {k: v for k, v in DEFAULTS.items() if not (isinstance(v, str) and "{{" in v)}
    result = ArgumentSpecValidator(SPECS).validate(static)
    assert not result.error_messages, result.error_messages
    # the platform variables are there and the lab is the default platform
    assert all(name in DEFAULTS for name in PLATFORM_VARIABLES)
    assert any(name.startswith("failover_rds_") for name in DEFAULTS)
    assert any(name.startswith("failover_k8s_") for name in DEFAULTS)
    assert DEFAULTS["failover_database_platform"] == DEFAULTS["failover_services_platform"] == "hosts"


def test_the_example_inventory_fragment_uses_only_known_failover_variables():
    fragment = yaml.safe_load((REPO_ROOT / "inventories" / "example-aws" / "group_vars" / "control.yml").read_text())
    specs = SPECS
    unknown = [k for k in fragment if k.startswith("failover_") and k not in specs]
    assert not unknown
    assert fragment["failover_database_platform"] in specs["failover_database_platform"]["choices"]
    assert fragment["failover_services_platform"] in specs["failover_services_platform"]["choices"]
    assert set(fragment["failover_rds_instances"]) == set(fragment["failover_k8s_clusters"]) == {"east", "west"}


def test_rds_instances_default_comes_from_aws_infra_outputs(tmp_path: Path):
    """aws_infra_stack as docs/aws_infra.md shows it -> {region: instance}."""
    stack = {"database": {
        "primary": {"identifier": "cp-db", "region": "east", "aws_region": "us-east-1", "role": "primary"},
        "replicas": [{"identifier": "cp-db-west", "region": "west", "aws_region": "us-west-2", "role": "replica"}]}}
    # no role is included here: the role's defaults file is given as inventory variables instead
    run = run_steps(tmp_path, [], {"aws_infra_stack": stack, "failover_rds": "{{ failover_rds_instances }}"},
                    inventory_vars=[ROLE / "defaults" / "main.yml"])
    assert run.run.rc == 0, run.output[-3000:]
    instances = run.facts["failover_rds"]
    assert instances["east"]["identifier"] == "cp-db" and instances["east"]["aws_region"] == "us-east-1"
    assert instances["west"]["identifier"] == "cp-db-west" and instances["west"]["aws_region"] == "us-west-2"
