"""Every pod template the roles render against Pod Security Admission `restricted` (v1.31) and the
seed's intent (non-root, no privilege escalation, capabilities dropped), plus negative controls
that prove each rule of the checker fires.
"""

from __future__ import annotations

import copy

import pytest

from tests.k8s.psa import pod_specs, violations


def _pods(objects):
    return [pod for _path, doc in objects for pod in pod_specs(doc)]


def test_every_pod_template_meets_restricted_and_the_intent(rendered):
    _directory, objects = rendered
    pods = _pods(objects)
    assert [where for where, _metadata, _spec in pods] == ["Deployment/service-a", "Deployment/service-b"]
    gaps = {where: violations(spec, metadata) for where, metadata, spec in pods}
    assert gaps == {"Deployment/service-a": [], "Deployment/service-b": []}


def test_standby_pods_are_just_as_restricted(render_with):
    run, objects = render_with({"k8s_policies_region_role": "standby", "k8s_workloads_region_role": "standby"})
    assert run.rc == 0, run.stdout
    assert all(violations(spec, metadata) == [] for _where, metadata, spec in _pods(objects))


def _container(spec):
    return spec["containers"][0]


MUTATIONS = {
    "hostNetwork": (lambda s: s.update(hostNetwork=True), "baseline: hostNetwork"),
    "hostPID": (lambda s: s.update(hostPID=True), "baseline: hostPID"),
    "privileged": (lambda s: _container(s)["securityContext"].update(privileged=True), "is privileged"),
    "hostPath": (lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "is a hostPath"),
    "hostPort": (lambda s: _container(s)["ports"][0].update(hostPort=8080), "hostPort"),
    "escalation": (lambda s: _container(s)["securityContext"].pop("allowPrivilegeEscalation"),
                   "allowPrivilegeEscalation must be false"),
    "root-user": (lambda s: _container(s)["securityContext"].update(runAsUser=0), "runAsUser is 0"),
    "runAsNonRoot-off": (lambda s: _container(s)["securityContext"].update(runAsNonRoot=False), "runAsNonRoot"),
    "runAsNonRoot-missing": (lambda s: (s["securityContext"].pop("runAsNonRoot"),
                                        _container(s)["securityContext"].pop("runAsNonRoot")), "runAsNonRoot"),
    "seccomp-unconfined": (lambda s: _container(s)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
                           "seccompProfile.type Unconfined"),
    "seccomp-missing": (lambda s: (s["securityContext"].pop("seccompProfile"),
                                   _container(s)["securityContext"].pop("seccompProfile")), "needs seccompProfile"),
    "caps-not-dropped": (lambda s: _container(s)["securityContext"].update(capabilities={}), "must drop ALL"),
    "caps-added": (lambda s: _container(s)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
                   "adds capabilities"),
    "caps-baseline-only": (lambda s: _container(s)["securityContext"]["capabilities"].update(add=["CHOWN"]),
                           "may add only NET_BIND_SERVICE"),
    "volume-type": (lambda s: s["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}),
                    "restricted: volume n"),
    "sysctl": (lambda s: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
               "sysctl kernel.msgmax"),
    "procMount": (lambda s: _container(s)["securityContext"].update(procMount="Unmasked"), "procMount"),
    "selinux": (lambda s: s["securityContext"].update(seLinuxOptions={"type": "spc_t"}), "seLinuxOptions.type"),
    "init-container": (lambda s: s.update(initContainers=[{"name": "init", "image": "x"}]),
                       "initContainers[init] allowPrivilegeEscalation"),
    "writable-root": (lambda s: _container(s)["securityContext"].update(readOnlyRootFilesystem=False),
                      "intent: containers[service-a] readOnlyRootFilesystem"),
    "token": (lambda s: s.update(automountServiceAccountToken=True), "automountServiceAccountToken"),
    "no-limits": (lambda s: _container(s)["resources"].pop("limits"), "resources.limits.cpu"),
    "no-readiness": (lambda s: _container(s).pop("readinessProbe"), "needs a readinessProbe"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_checker_reports_each_gap(rendered, name):
    """Negative control: break one rule in a rendered pod; the checker must name it."""
    _directory, objects = rendered
    (_where, metadata, spec), _second = _pods(objects)
    spec = copy.deepcopy(spec)
    mutate, expected = MUTATIONS[name]
    mutate(spec)
    found = violations(spec, metadata)
    assert any(expected in message for message in found), found
