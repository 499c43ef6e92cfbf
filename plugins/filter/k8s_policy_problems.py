# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: k8s_policy_problems
short_description: Semantic problems in the k8s_policies role's input
version_added: 1.0.0
author: CloudPhoenix engineers (@cloudphoenix)
description:
  - Checks what an argument spec cannot, before any manifest is rendered or applied.
  - Malformed quantities (for example C(500x)), min_replicas greater than max_replicas, a
    PodDisruptionBudget that blocks every voluntary eviction, a ResourceQuota smaller than the
    sum of the services' requests or limits at max_replicas plus one rollout surge pod each,
    malformed CIDRs, egress open to everywhere, unknown peers, bad LimitRange defaults.
  - Returns every problem found, not just the first one.
options:
  _input:
    description:
      - The role's variables without the C(k8s_policies_) prefix, as a dictionary with the keys
        C(namespace), C(psa_version), C(region_role), C(services), C(ingress_namespace), C(monitoring_namespace),
        C(egress), C(quota) and C(limit_range).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Stop before any API call when the input makes no sense
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('; ') }}"
  vars:
    problems: "{{ {'namespace': 'shop', 'services': services} | cloudphoenix.stack.k8s_policy_problems }}"
"""

RETURN = r"""
_value:
  description: One human-readable message per problem; empty when the input is fine.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence
from ansible.module_utils.six import string_types

from ansible_collections.cloudphoenix.stack.plugins.module_utils._k8s import policy_problems


def k8s_policy_problems(spec):
    if not isinstance(spec, dict):
        raise AnsibleFilterError("k8s_policy_problems expects a dictionary, got %s" % type(spec).__name__)
    services = spec.get("services")
    if services is not None and (isinstance(services, string_types) or not is_sequence(services)):
        raise AnsibleFilterError("k8s_policy_problems: services must be a list")
    return policy_problems(spec)


class FilterModule(object):
    def filters(self):
        return {"k8s_policy_problems": k8s_policy_problems}
