#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: failover_report
short_description: Build, save and print the report of a failover, switchover or failback run
version_added: 1.0.0
description:
  - The last phase of the runbook. Turns the phase marks (a time stamp taken after each phase), the plan and
    what each phase did into a report - phase timings, total RTO, lag at promotion (data at risk), old and new
    primary, epoch, what was fenced, what was skipped and why.
  - Writes it as JSON to C(<report_dir>/<kind>-<UTC time>.json) and C(<report_dir>/<kind>-latest.json), and
    returns it with a printable table in RV(table).
  - The report is an output of the run, like a log - writing it is not a change to the stack, so the task
    reports C(changed=false).
  - In check mode nothing is written; the table shows the plan.
author: CloudPhoenix engineers (@cloudphoenix)
attributes:
  check_mode:
    description: Builds the report, writes no file.
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
options:
  kind:
    description: Which runbook ran.
    type: str
    choices: [failover, switchover, failback]
    required: true
  plan:
    description: RV(cloudphoenix.stack.failover_preflight#module:plan).
    type: dict
    required: true
  marks:
    description: C({phase, at}) time stamps (Unix seconds); the first is the start, each later one ends its phase.
    type: list
    elements: dict
    required: true
  phases:
    description: C({phase, status, detail}) per phase, in order.
    type: list
    elements: dict
    required: true
  extra:
    description: More fields for the report (for example C(fenced), C(write_gap_seconds)).
    type: dict
    default: {}
  report_dir:
    description: Directory for the JSON files (created when missing).
    type: path
    required: true
  failure:
    description:
      - The run failed - what failed. The report then says C(outcome=failed), the failed phase (from the task's
        name, else the phase after the last one finished), the error, who holds the fencing record and the
        command that resumes. O(phases) lists only the phases that finished, then the failed one.
    type: dict
    suboptions:
      task:
        description: The failed task's name (C(ansible_failed_task.name)).
        type: str
      msg:
        description: Its error message.
        type: str
      resume_command:
        description: The command that resumes the run (printed as is).
        type: str
"""

EXAMPLES = r"""
- name: Report
  cloudphoenix.stack.failover_report:
    kind: failover
    plan: "{{ failover_preflight.plan }}"
    marks: "{{ failover_marks }}"
    phases: "{{ failover_phases }}"
    report_dir: /var/tmp/cloudphoenix-reports
  register: failover_report
"""

RETURN = r"""
report:
  description: The report (what the JSON file holds).
  returned: success
  type: dict
table:
  description: The report as printable lines.
  returned: success
  type: list
  elements: str
path:
  description: The JSON file written (null in check mode).
  returned: success
  type: str
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cloudphoenix.stack.plugins.module_utils import _failover


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kind=dict(type="str", required=True, choices=["failover", "switchover", "failback"]),
            plan=dict(type="dict", required=True),
            marks=dict(type="list", elements="dict", required=True),
            phases=dict(type="list", elements="dict", required=True),
            extra=dict(type="dict", default={}),
            report_dir=dict(type="path", required=True),
            failure=dict(type="dict", options=dict(
                task=dict(type="str"), msg=dict(type="str"), resume_command=dict(type="str"))),
        ),
        supports_check_mode=True,
    )
    params = module.params
    marks = params["marks"]
    if not marks or any("at" not in mark or "phase" not in mark for mark in marks):
        module.fail_json(msg="marks must be a non-empty list of {phase, at}")
    phases, failure = params["phases"], None
    if params["failure"]:
        phase = _failover.failed_phase(marks, params["failure"]["task"])
        phases = _failover.failed_rows(marks, phase, params["failure"]["msg"] or "")
        failure = {"phase": phase, "msg": params["failure"]["msg"],
                   "claim_held_by": _failover.claim_holder(params["plan"], marks),
                   "resume_command": params["failure"]["resume_command"]}
    report = _failover.build_report(params["kind"], params["plan"], marks, phases, module.check_mode,
                                    started_at=float(marks[0]["at"]), extra=params["extra"], failure=failure)
    path = None
    if not module.check_mode:
        try:
            if not os.path.isdir(params["report_dir"]):
                os.makedirs(params["report_dir"], 0o755)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(float(marks[0]["at"])))
            text = _failover.dumps(report)
            path = os.path.join(params["report_dir"], "%s-%s.json" % (params["kind"], stamp))
            for target in (path, os.path.join(params["report_dir"], "%s-latest.json" % params["kind"])):
                temp = target + ".tmp"
                with open(temp, "w") as handle:
                    handle.write(text)
                os.rename(temp, target)
        except (OSError, IOError) as exc:
            module.fail_json(msg="could not write the report to %s: %s" % (params["report_dir"], exc), report=report)
    module.exit_json(changed=False, report=report, table=_failover.render_table(report), path=path)


if __name__ == "__main__":
    main()
