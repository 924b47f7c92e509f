"""Checks for the `audit` role: auditd running, rules loaded as on disk, events recorded."""

from __future__ import annotations

import collections
import re

import pytest

pytestmark = pytest.mark.roles("audit")


def test_auditd_running(host, kernel_node):
    """auditd running and enabled"""
    svc = host.service("auditd")
    assert svc.is_running and svc.is_enabled


def test_audit_from_boot(host, kernel_node):
    """kernel audits from boot (command line)"""
    cmdline = host.file("/proc/cmdline").content_string.split()
    missing = [a for a in kernel_node["audit_kernel_args"] if a not in cmdline]
    assert not missing, f"not on the running kernel's command line (reboot required?): {missing}"


def _keys(lines) -> collections.Counter:
    keys = collections.Counter()
    for line in lines:
        line = line.strip()
        if not line.startswith(("-a", "-w")):
            continue
        m = re.search(r"(?:-k |-F key=|key=)(\S+)", line)
        keys[m.group(1) if m else "?"] += 1
    return keys


def test_loaded_rules_equal_disk(host, kernel_node):
    """loaded audit rules equal the rules on disk"""
    check = host.run("augenrules --check")
    assert "No change" in check.stdout + check.stderr, f"rules.d is newer than audit.rules: {check.stdout.strip()}"
    disk = _keys(host.file("/etc/audit/audit.rules").content_string.splitlines())
    live = _keys(host.check_output("auditctl -l").splitlines())
    assert disk == live, f"per-key rule counts differ: disk {dict(disk)} live {dict(live)}"
    for key in ("identity", "scope", "time-change", "system-locale", "privileged", "access", "perm_mod",
                "mounts", "session", "logins", "delete", "MAC-policy", "kernel_modules", "user_emulation"):
        assert live[key] > 0, f"no loaded rule with key {key}"


def test_identity_change_is_recorded(host, kernel_node):
    """a change to /etc/passwd produces an identity event"""
    # The event is looked up by the PID of our own chmod: a count of all identity events is not
    # monotonic (rotation) and record lines may carry a node= prefix (name_format).
    pid = host.check_output("sh -c 'echo $$; exec chmod 0644 /etc/passwd'").strip()
    search = f"ausearch --input-logs -k identity -p {pid} 2>/dev/null | grep -c 'key=\"identity\"' || true"
    found = 0
    for _ in range(30):  # auditd may lag on a loaded node (seen under QEMU/TCG)
        found = int(host.check_output(search) or 0)
        if found:
            break
        host.run("sleep 1")
    assert found, f"no identity audit event for chmod /etc/passwd (pid {pid})"


def test_auditd_conf(host, kernel_node):
    """auditd rotates logs and never halts the node"""
    conf = dict(re.findall(r"^(\w+)\s*=\s*(\S+)", host.file("/etc/audit/auditd.conf").content_string, re.M))
    assert conf.get("disk_full_action") == kernel_node["audit_disk_full_action"]
    assert conf.get("max_log_file_action") == "rotate"
    assert conf.get("num_logs") == str(kernel_node["audit_num_logs"])
    assert "halt" not in (conf.get("disk_full_action"), conf.get("admin_space_left_action"))


def test_rules_d_only_ours(host, kernel_node):
    """audit rules.d holds only our rules"""
    from mlops_provision.checks.unmanaged import assert_only_ours, strangers

    found = strangers(host, "/etc/audit/rules.d", prefix="",
                      ours={kernel_node["audit_rules_file"].rsplit("/", 1)[1],
                            kernel_node["audit_immutable_file"].rsplit("/", 1)[1]})
    assert_only_ours("/etc/audit/rules.d", found, "audit_purge_unmanaged",
                     kernel_node["audit_purge_unmanaged"])
