#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: infra_validate
short_description: Validate a multi-region AWS stack description before any AWS call
version_added: 1.0.0
description:
  - Checks the per-region description the C(aws_infra) role provisions, without calling AWS.
  - Rules per region are AWS region name format, IPv4 CIDR syntax and size (/16 to /28), subnets
    inside their VPC and not overlapping each other, availability zones inside the region, private
    subnets spanning at least two availability zones, a PostgreSQL engine version inside a supported
    range, an environment in V(dev), V(staging) or V(production), and production rules (deletion
    protection on, backup retention of at least 7 days).
  - Rules across regions are no overlap between the regions' VPC CIDRs, exactly one primary region,
    one environment for all regions, and each AWS region used once.
  - With O(state=absent), refuses to delete protected resources unless O(allow_protected_delete=true).
  - With O(current) (what read-only discovery found), reports changes that force a resource to be
    replaced; refuses them where they are not automated, and in production unless
    O(allow_replacement=true).
  - Never changes anything; all problems are reported at once.
author: CloudPhoenix engineers (@cloudphoenix)
attributes:
  check_mode:
    support: full
    description: The module never changes anything; it behaves the same in check mode.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  regions:
    description:
      - One entry per region of the stack.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The region's name in the inventory (for example V(east)).
        type: str
        required: true
      aws_region:
        description: The AWS region (for example V(us-east-1)).
        type: str
        required: true
      role:
        description: V(primary) holds the writable database; V(dr) holds the read replica.
        type: str
        required: true
      environment:
        description: V(dev), V(staging) or V(production).
        type: str
        required: true
      vpc_cidr:
        description: The VPC's IPv4 CIDR block.
        type: str
        required: true
      subnets:
        description: Subnets with keys C(name), C(cidr), C(az) and C(tier) (V(public) or V(private)).
        type: list
        elements: dict
        required: true
      db:
        description: Database settings with keys C(engine_version), C(backup_retention), C(deletion_protection).
        type: dict
        required: true
  state:
    description: V(present) provisions, V(absent) tears down.
    type: str
    choices: [present, absent]
    default: present
  engine_version_min:
    description: Lowest supported PostgreSQL major version.
    type: int
    default: 13
  engine_version_max:
    description: Highest supported PostgreSQL major version.
    type: int
    default: 17
  allow_protected_delete:
    description: Allow O(state=absent) to delete protected resources (a production stack, a protected database).
    type: bool
    default: false
  allow_replacement:
    description: Allow replacement-forcing changes in production (carried out create-before-destroy).
    type: bool
    default: false
  current:
    description:
      - What read-only discovery found, keyed by region name; each value has the keys C(vpcs)
        (the C(vpcs) result of M(amazon.aws.ec2_vpc_net_info)), C(subnets) (the C(subnets) result of
        M(amazon.aws.ec2_vpc_subnet_info), named by their C(cloudphoenix:subnet) tag) and
        C(db_instances) (the C(instances) result of M(amazon.aws.rds_instance_info)).
      - When omitted, no replacement check is done.
    type: dict
"""

EXAMPLES = r"""
- name: Validate the stack before any AWS call
  cloudphoenix.stack.infra_validate:
    regions:
      - name: east
        aws_region: us-east-1
        role: primary
        environment: production
        vpc_cidr: 10.10.0.0/16
        subnets:
          - {name: private-a, cidr: 10.10.1.0/24, az: us-east-1a, tier: private}
          - {name: private-b, cidr: 10.10.2.0/24, az: us-east-1b, tier: private}
        db: {engine_version: "15.7", backup_retention: 7, deletion_protection: true}
"""

RETURN = r"""
regions:
  description: The validated region names.
  returned: always
  type: list
  elements: str
  sample: [east, west]
replacements:
  description: Changes that force a replacement (only with O(current)).
  returned: always
  type: list
  elements: dict
  sample: [{resource: subnet, name: private-a, property: cidr, current: 10.10.1.0/24, desired: 10.10.3.0/24}]
retired_subnets:
  description: Per region, stack subnets no longer wanted (removed after their replacements are wired up).
  returned: always
  type: dict
  sample: {east: [{id: subnet-0123, cidr: 10.10.9.0/24}]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cloudphoenix.stack.plugins.module_utils._infra_validate import (
    check_replacements,
    check_teardown,
    find_replacements,
    normalize_current,
    validate_stack,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            regions=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                aws_region=dict(type="str", required=True),
                role=dict(type="str", required=True),
                environment=dict(type="str", required=True),
                vpc_cidr=dict(type="str", required=True),
                subnets=dict(type="list", elements="dict", required=True),
                db=dict(type="dict", required=True),
            )),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            engine_version_min=dict(type="int", default=13),
            engine_version_max=dict(type="int", default=17),
            allow_protected_delete=dict(type="bool", default=False),
            allow_replacement=dict(type="bool", default=False),
            current=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    specs = params["regions"]
    errors = validate_stack(specs, params["engine_version_min"], params["engine_version_max"])
    if params["state"] == "absent":
        errors.extend(check_teardown(specs, params["allow_protected_delete"]))

    replacements = []
    retired = {}
    if params["current"] is not None and not errors and params["state"] == "present":
        for spec in specs:
            found, retired_ids = find_replacements(spec, normalize_current(params["current"].get(spec["name"])))
            errors.extend(check_replacements(spec, found, params["allow_replacement"]))
            replacements.extend(found)
            retired[spec["name"]] = retired_ids

    if errors:
        module.fail_json(msg="aws_infra validation failed: " + "; ".join(errors), errors=errors)
    module.exit_json(changed=False, regions=[spec["name"] for spec in specs],
                     replacements=replacements, retired_subnets=retired)


if __name__ == "__main__":
    main()
