# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: k8s_workload_problems
short_description: Semantic problems in the k8s_workloads role's input
version_added: 1.0.0
author: CloudPhoenix engineers (@cloudphoenix)
description:
  - Checks what an argument spec cannot, before any manifest is rendered or applied.
  - Malformed quantities (for example C(500x)), requests above limits, min_replicas greater
    than max_replicas, images without a tag or digest (or with C(latest)), invalid
    environment variable names, probe paths that are not absolute, and a termination grace
    period shorter than the preStop drain plus gunicorn's graceful timeout.
  - Returns every problem found, not just the first one.
options:
  _input:
    description:
      - The role's variables without the C(k8s_workloads_) prefix, as a dictionary with the keys
        C(namespace), C(services), C(liveness_path), C(readiness_path), C(prestop_sleep_seconds),
        C(graceful_timeout), C(termination_grace_period_seconds), C(topology_key), C(region),
        C(database_hosts), C(database_port), C(database_name) and C(require_image_digest).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Stop before any API call when the input makes no sense
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('; ') }}"
  vars:
    problems: "{{ {'namespace': 'shop', 'services': services} | cloudphoenix.stack.k8s_workload_problems }}"
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

from ansible_collections.cloudphoenix.stack.plugins.module_utils._k8s import workload_problems


def k8s_workload_problems(spec):
    if not isinstance(spec, dict):
        raise AnsibleFilterError("k8s_workload_problems expects a dictionary, got %s" % type(spec).__name__)
    services = spec.get("services")
    if services is not None and (isinstance(services, string_types) or not is_sequence(services)):
        raise AnsibleFilterError("k8s_workload_problems: services must be a list")
    return workload_problems(spec)


class FilterModule(object):
    def filters(self):
        return {"k8s_workload_problems": k8s_workload_problems}
