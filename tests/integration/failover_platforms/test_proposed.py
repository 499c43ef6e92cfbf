"""The proposed defaults and argument specs agree, and the RDS instances are derived from aws_infra's outputs."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from tests.integration.failover_platforms.conftest import PROPOSED_DEFAULTS, run_steps
from tests.support.ansible import REPO_ROOT

PROPOSED_SPECS = REPO_ROOT / "roles" / "failover" / "argument_specs_platform.yml.proposed"
CURRENT = REPO_ROOT / "roles" / "failover"


def test_every_proposed_default_has_a_spec_and_the_static_defaults_match():
    defaults = yaml.safe_load(PROPOSED_DEFAULTS.read_text())
    specs = yaml.safe_load(PROPOSED_SPECS.read_text())
    assert sorted(defaults) == sorted(specs)
    assert all(name.startswith("failover_") for name in defaults)
    for name, spec in specs.items():
        if "default" in spec:
            assert defaults[name] == spec["default"], name
    # the static defaults pass their own spec (templated ones are checked at run time by the role)
    static = {k: v for k, v in defaults.items() if not (isinstance(v, str) and "{{" in v)}
    result = ArgumentSpecValidator(specs).validate(static)
    assert not result.error_messages, result.error_messages
    # once merged into the role (or where the role already has a name), the values are the same
    current = yaml.safe_load((CURRENT / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    role_defaults = yaml.safe_load((CURRENT / "defaults" / "main.yml").read_text())
    assert {k: current[k] for k in specs if k in current} == {k: specs[k] for k in specs if k in current}
    assert {k: role_defaults[k] for k in defaults if k in role_defaults} == {
        k: defaults[k] for k in defaults if k in role_defaults}


def test_the_example_inventory_fragment_uses_only_known_failover_variables():
    fragment = yaml.safe_load((REPO_ROOT / "inventories" / "example-aws" / "group_vars" / "failover.yml").read_text())
    specs = yaml.safe_load(PROPOSED_SPECS.read_text())
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
    run = run_steps(tmp_path, [], {"aws_infra_stack": stack, "failover_rds": "{{ failover_rds_instances }}"})
    assert run.run.rc == 0, run.output[-3000:]
    instances = run.facts["failover_rds"]
    assert instances["east"]["identifier"] == "cp-db" and instances["east"]["aws_region"] == "us-east-1"
    assert instances["west"]["identifier"] == "cp-db-west" and instances["west"]["aws_region"] == "us-west-2"
