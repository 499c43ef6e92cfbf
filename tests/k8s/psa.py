"""Pod Security Admission checks, written out from the Pod Security Standards (policy version v1.31).

https://kubernetes.io/docs/concepts/security/pod-security-standards/ - `baseline` and `restricted`
controls, evaluated the way the PSA admission plugin does for a pod spec (pod-level fields may
satisfy a container requirement). Plus the project's own intent from the seed (non-root, no
privilege escalation, capabilities dropped) and the issue (read-only root, no service-account
token, resources and probes on every container).

`violations(pod_spec)` returns one message per gap; an empty list means the pod would be admitted
by a namespace enforcing `restricted` and meets the intent.
"""

from __future__ import annotations

from typing import Any

BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                 "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
RESTRICTED_CAPS = {"NET_BIND_SERVICE"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SECCOMP_OK = {"RuntimeDefault", "Localhost"}
APPARMOR_OK = {"RuntimeDefault", "Localhost"}

POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def pod_specs(manifest: dict[str, Any]) -> list[tuple[str, dict, dict]]:
    """(where, pod metadata, pod spec) for every pod a manifest creates."""
    kind = manifest.get("kind")
    name = f"{kind}/{manifest.get('metadata', {}).get('name')}"
    if kind == "Pod":
        return [(name, manifest.get("metadata", {}), manifest.get("spec", {}))]
    if kind in POD_TEMPLATE_KINDS:
        template = manifest["spec"]["template"]
        return [(name, template.get("metadata", {}), template.get("spec", {}))]
    if kind == "CronJob":
        template = manifest["spec"]["jobTemplate"]["spec"]["template"]
        return [(name, template.get("metadata", {}), template.get("spec", {}))]
    return []


def _containers(spec: dict) -> list[tuple[str, dict]]:
    out = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        out += [(f"{key}[{c.get('name')}]", c) for c in spec.get(key) or []]
    return out


def violations(spec: dict, metadata: dict | None = None, *, intent: bool = True) -> list[str]:
    metadata = metadata or {}
    found: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    containers = _containers(spec)
    if not spec.get("containers"):
        found.append("no containers")

    # --- baseline ---
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"baseline: {field} must be unset or false")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("baseline: pod windowsOptions.hostProcess must not be true")
    for key, value in (metadata.get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
                value == "runtime/default" or value.startswith("localhost/")):
            found.append(f"baseline: AppArmor annotation {key}={value}")
    for where, sc_owner in [("pod", pod_sc)] + [(w, c.get("securityContext") or {}) for w, c in containers]:
        profile = (sc_owner.get("appArmorProfile") or {}).get("type")
        if profile is not None and profile not in APPARMOR_OK:
            found.append(f"baseline: {where} appArmorProfile.type {profile}")
        selinux = sc_owner.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES:
            found.append(f"baseline: {where} seLinuxOptions.type {selinux.get('type')}")
        if selinux.get("user") or selinux.get("role"):
            found.append(f"baseline: {where} seLinuxOptions.user/role must be unset")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"baseline: sysctl {sysctl.get('name')} is not in the safe set")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if "hostPath" in kinds:
            found.append(f"baseline: volume {volume.get('name')} is a hostPath")
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"restricted: volume {volume.get('name')} has type {sorted(kinds - RESTRICTED_VOLUMES)}")

    # --- per container: baseline and restricted ---
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_OK:
        found.append(f"restricted: pod seccompProfile.type {pod_seccomp}")
    if pod_sc.get("runAsUser") == 0:
        found.append("restricted: pod runAsUser is 0")
    for where, container in containers:
        sc = container.get("securityContext") or {}
        if sc.get("privileged"):
            found.append(f"baseline: {where} is privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"baseline: {where} windowsOptions.hostProcess")
        if sc.get("procMount") not in (None, "Default"):
            found.append(f"baseline: {where} procMount {sc.get('procMount')}")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"baseline: {where} uses hostPort {port.get('hostPort')}")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"restricted: {where} allowPrivilegeEscalation must be false")
        if sc.get("runAsNonRoot") is False or (not pod_non_root and sc.get("runAsNonRoot") is not True):
            found.append(f"restricted: {where} runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            found.append(f"restricted: {where} runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in SECCOMP_OK:
            found.append(f"restricted: {where} seccompProfile.type {seccomp}")
        if seccomp is None and pod_seccomp is None:
            found.append(f"restricted: {where} needs seccompProfile RuntimeDefault or Localhost (pod or container)")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"restricted: {where} must drop ALL capabilities")
        added = set(caps.get("add") or [])
        if added - BASELINE_CAPS:
            found.append(f"baseline: {where} adds capabilities {sorted(added - BASELINE_CAPS)}")
        if added - RESTRICTED_CAPS:
            found.append(f"restricted: {where} may add only NET_BIND_SERVICE, adds {sorted(added)}")

        # --- the project's intent ---
        if intent:
            if sc.get("readOnlyRootFilesystem") is not True:
                found.append(f"intent: {where} readOnlyRootFilesystem must be true")
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            if uid is None:
                found.append(f"intent: {where} must set a numeric non-root runAsUser (image USER is not trusted)")
            resources = container.get("resources") or {}
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in (resources.get(section) or {}):
                        found.append(f"intent: {where} needs resources.{section}.{resource}")
            if where.startswith("containers["):
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in container:
                        found.append(f"intent: {where} needs a {probe}")
    if intent and spec.get("automountServiceAccountToken") is not False:
        found.append("intent: automountServiceAccountToken must be false")
    return found
