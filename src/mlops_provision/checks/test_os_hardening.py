"""Checks for the `os_hardening` role: effective sshd settings, SSH logins, sysctls, modules."""

from __future__ import annotations

import re
import subprocess

import pytest

pytestmark = pytest.mark.roles("os_hardening")


def _sshd(host) -> dict[str, str]:
    out = host.check_output("sshd -T -C user=root,host=localhost,addr=127.0.0.1")
    return {k: v for k, _, v in (line.partition(" ") for line in out.splitlines())}


def test_sshd_effective_config(host, node):
    """sshd effective config is hardened"""
    cfg = _sshd(host)
    root = {"prohibit-password": "without-password"}.get(
        node["os_hardening_ssh_permit_root_login"], node["os_hardening_ssh_permit_root_login"])
    expected = {
        "passwordauthentication": "no", "kbdinteractiveauthentication": "no",
        "permitemptypasswords": "no", "permitrootlogin": root, "x11forwarding": "no",
        "allowtcpforwarding": "no", "maxauthtries": str(node["os_hardening_ssh_max_auth_tries"]),
        "logingracetime": str(node["os_hardening_ssh_login_grace_time"]),
        "ciphers": ",".join(node["os_hardening_ssh_ciphers"]),
        "macs": ",".join(node["os_hardening_ssh_macs"]),
        "kexalgorithms": ",".join(node["os_hardening_ssh_kex_effective"]),
        "hostkeyalgorithms": ",".join(node["os_hardening_ssh_host_key_algorithms"]),
        "persourcemaxstartups": str(node["os_hardening_ssh_per_source_max_startups"]),
    }
    wrong = {k: (cfg.get(k), v) for k, v in expected.items() if cfg.get(k) != v}
    assert not wrong, f"sshd -T differs (got, expected): {wrong}"
    out = host.check_output("sshd -T -C user=root,host=localhost,addr=127.0.0.1")
    keys = sorted(line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("hostkey "))
    assert keys == sorted(f"/etc/ssh/ssh_host_{k}_key" for k in node["os_hardening_ssh_host_keys"]), keys


def test_ssh_forwarding_for_ml_users(host, node):
    """ML users may forward local ports"""
    conf = host.file("/etc/ssh/sshd_config").content_string
    assert f"Match Group {node['os_hardening_ssh_forwarding_group']}" in conf
    assert host.group(node["os_hardening_ssh_forwarding_group"]).exists


def _ssh_args(node) -> list[str] | None:
    addr, port = node.vars.get("ansible_host"), node.vars.get("ansible_port", 22)
    if not addr:
        return None
    from mlops_provision.ansible_config import ssh_timeout

    args = ["ssh", "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", f"ConnectTimeout={ssh_timeout(node.vars)}", "-o", "BatchMode=yes"]
    key = node.vars.get("ansible_ssh_private_key_file") or node.vars.get("ansible_private_key_file")
    if key:  # Ansible accepts both spellings (Molecule writes the second)
        args += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    return [*args, f"{node.vars.get('ansible_user', 'root')}@{addr}"]


def test_password_login_refused_key_login_works(node):
    """password login refused, key login works"""
    args = _ssh_args(node)
    if args is None:
        pytest.skip("no ansible_host: cannot reach sshd from the admin machine")
    key = subprocess.run([*args, "true"], capture_output=True, text=True, timeout=60)
    assert key.returncode == 0, f"key login failed: {key.stderr.strip()}"
    no_key = ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"]
    pw = subprocess.run([*args[:-1], *no_key, args[-1], "true"], capture_output=True, text=True, timeout=60)
    assert pw.returncode != 0, "login without a key succeeded"
    assert "Permission denied (publickey)" in pw.stderr, f"sshd offers more than publickey: {pw.stderr.strip()}"


def test_sysctl_effective_values(host, kernel_node):
    """kernel parameters have their effective values"""
    wrong = {}
    for key, value in kernel_node["os_hardening_sysctl_effective"].items():
        got = host.run(f"sysctl -n {key}")
        if got.rc != 0 or got.stdout.split() != str(value).split():
            wrong[key] = (got.stdout.strip() or got.stderr.strip(), value)
    assert not wrong, f"sysctl -n differs (got, expected): {wrong}"


def test_sysctl_values_survive_reboot(host, kernel_node):
    """kernel parameters at boot equal the inventory's"""
    # systemd-sysctl applies every sysctl.d file in name order at boot; the last value wins.
    # A package file that sorts after ours would undo a value at the next reboot.
    out = host.check_output("/lib/systemd/systemd-sysctl --cat-config --no-pager")
    at_boot, source = {}, {}
    current = "?"
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("# /"):
            current = line[2:].split(" ")[0]
        elif line and line[0] not in "#;" and "=" in line:
            key, _, value = line.partition("=")
            key = key.strip().lstrip("-").replace("/", ".")
            at_boot[key], source[key] = value.split(), current
    wanted = kernel_node["os_hardening_sysctl_effective"]
    wrong = {key: (" ".join(at_boot.get(key, ["unset"])), value, source.get(key))
             for key, value in wanted.items() if at_boot.get(key) != str(value).split()}
    assert not wrong, f"value at boot differs (at boot, expected, from file): {wrong}"


def test_kernel_cmdline(host, kernel_node):
    """kernel runs with the hardening's command-line options"""
    wanted = kernel_node["os_hardening_kernel_cmdline"]
    dropin = host.file(kernel_node["os_hardening_os_grub_dropin"])
    if host.file("/etc/default/grub").exists:
        assert dropin.exists and " ".join(wanted) in dropin.content_string, f"{dropin.path} does not pass {wanted}"
    cmdline = host.file("/proc/cmdline").content_string.split()
    missing = [a for a in wanted if a not in cmdline]
    assert not missing, f"not on the running kernel's command line (reboot required?): {missing}"


def test_modules(host, kernel_node):
    """platform modules loaded, unused ones blacklisted"""
    missing = [m for m in kernel_node["os_hardening_modules_load"] if not host.file(f"/sys/module/{m}").exists]
    assert not missing, f"modules not loaded: {missing}"
    loadable = [m for m in kernel_node["os_hardening_blacklisted_modules"]
                if not re.search(r"install (/usr)?/bin/(true|false)", host.run(f"modprobe -n -v {m}").stdout)]
    assert not loadable, f"modules not blacklisted: {loadable}"


def test_login_defs_and_core_dumps(host, node):
    """password aging, hashing, umask and core dump limits set"""
    text = host.file("/etc/login.defs").content_string
    active = dict(re.findall(r"^(\w+)\s+(\S+)", text, re.M))
    wanted = {"UMASK": node["os_hardening_umask"], **node["os_hardening_login_defs"]}
    wrong = {k: (active.get(k), v) for k, v in wanted.items() if active.get(k) != str(v)}
    assert not wrong, f"/etc/login.defs differs (got, expected): {wrong}"
    if node["os_hardening_disable_core_dumps"]:
        limits = host.file("/etc/security/limits.d/60-mlops-provision-core.conf")
        assert limits.exists and "* hard core 0" in limits.content_string, "core dumps are not forbidden"


def _settings(text: str) -> dict[str, str]:
    """key = value lines (pwquality.conf, faillock.conf), comments skipped."""
    return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in text.splitlines())
            if _ and not k.lstrip().startswith("#")}


def test_password_policy(host, node):
    """password rules, lockout after failures and password history in effect"""
    with host.sudo():
        pwquality = _settings(host.file("/etc/security/pwquality.conf").content_string)
        faillock = _settings(host.file("/etc/security/faillock.conf").content_string)
        auth = host.file("/etc/pam.d/common-auth").content_string
        account = host.file("/etc/pam.d/common-account").content_string
        password = host.file("/etc/pam.d/common-password").content_string
        root_max = host.check_output("getent shadow root | cut -d: -f5")
    wrong = {f"pwquality {k}": (pwquality.get(k), v) for k, v in node["os_hardening_pwquality"].items()
             if pwquality.get(k) != str(v)}
    wrong |= {f"faillock {k}": (faillock.get(k), v) for k, v in node["os_hardening_faillock"].items()
              if faillock.get(k) != str(v)}
    assert not wrong, f"settings differ (got, expected): {wrong}"
    # The order matters: count before pam_unix, lock after it fails.
    # "auth <control> <module> [first argument]"; a control may be "[a=b c=d]", with spaces
    lines = [re.match(r"auth\s+(?:\[[^]]*\]|\S+)\s+(\S+)\s*(\S*)", line) for line in auth.splitlines()]
    stack = [f"{m.group(1)} {m.group(2)}".strip() for m in lines if m]
    names = [entry.split()[0] for entry in stack]
    wanted = ("pam_faillock.so preauth", "pam_faillock.so authfail")
    assert all(w in stack for w in wanted) and "pam_unix.so" in names, f"common-auth does not lock accounts: {stack}"
    assert stack.index(wanted[0]) < names.index("pam_unix.so") < stack.index(wanted[1]), \
        f"common-auth: pam_faillock is not around pam_unix: {stack}"
    assert re.search(r"^account\s+required\s+pam_faillock\.so", account, re.M), "common-account lacks pam_faillock"
    remember = node["os_hardening_password_remember"]
    assert re.search(rf"^password\s.*\spam_pwhistory\.so\s.*\bremember={remember}\b", password, re.M), \
        f"common-password does not refuse the last {remember} passwords"
    assert re.search(rf"^password\s.*\spam_unix\.so\s.*\brounds={node['os_hardening_password_rounds']}\b",
                     password, re.M), "pam_unix hashes new passwords without the configured rounds"
    assert root_max.strip() == str(node["os_hardening_root_password_max_days"]), \
        f"root's maximum password age is {root_max!r}"


def test_idle_sessions_end(host, node):
    """idle interactive sessions end (shell TMOUT, logind)"""
    timeout = node["os_hardening_session_timeout"]
    shell = host.run("bash -lic 'echo TMOUT=$TMOUT' 2>/dev/null").stdout
    assert f"TMOUT={timeout or ''}\n" in shell, \
        f"a login shell has {shell.strip()!r}, expected TMOUT={timeout or ''}"
    usec = host.run("busctl get-property org.freedesktop.login1 /org/freedesktop/login1 "
                    "org.freedesktop.login1.Manager StopIdleSessionUSec")
    if usec.rc != 0:
        pytest.skip(f"logind does not answer: {usec.stderr.strip()}")
    want = str(timeout * 1_000_000) if timeout else "18446744073709551615"
    assert usec.stdout.split() == ["t", want], f"logind StopIdleSessionUSec is {usec.stdout.strip()}, expected {want}"


def test_audit_tools(host, node):
    """hardening tools installed, sysstat collecting"""
    wanted = list(node["os_hardening_tool_packages"])
    if node["os_hardening_install_openscap"]:
        wanted += node["os_hardening_os_openscap_packages"]
        # the packages named by os_hardening_scap_content_debs, at those versions
        for deb in node["os_hardening_scap_content_debs"]:
            name, version = deb["url"].rsplit("/", 1)[-1].split("_")[:2]
            got = host.package(name)
            assert got.is_installed and got.version == version, \
                f"{name} {version} is not installed ({got.version if got.is_installed else 'absent'})"
    missing = [p for p in wanted if not host.package(p).is_installed]
    assert not missing, f"packages not installed: {missing}"
    if "sysstat" in node["os_hardening_tool_packages"]:
        assert re.search(r'^ENABLED="true"', host.file("/etc/default/sysstat").content_string, re.M), \
            "sysstat collection is off"
        assert host.service("sysstat").is_enabled, "sysstat is not enabled at boot"


def test_aide_baseline(host, node):
    """AIDE baseline taken, checked daily"""
    if not node["os_hardening_aide"]:
        pytest.skip("os_hardening_aide is false")
    db = host.file(node["os_hardening_os_aide_db"])
    assert db.exists, f"no AIDE baseline at {db.path}"
    assert (db.user, db.mode) == (node["os_hardening_os_aide_user"], 0o600), (db.user, oct(db.mode))
    with host.sudo():
        entries = host.run(f"zcat -f {db.path} | grep -c '^/etc/ssh/sshd_config '")
        listed = host.run(f"zcat -f {db.path} | grep -c '^{node['os_hardening_aide_excludes'][0]}/'")
    assert entries.stdout.strip() == "1", "the baseline does not record /etc/ssh/sshd_config"
    assert listed.stdout.strip() == "0", f"the baseline records files under {node['os_hardening_aide_excludes'][0]}"
    conf = host.file(node["os_hardening_os_aide_config"]).content_string
    assert re.search(rf"^Checksums = {re.escape(node['os_hardening_aide_checksums'])}$", conf, re.M)
    timer = host.service(node["os_hardening_os_aide_timer"])
    assert timer.is_enabled and timer.is_running, "the daily AIDE check is not scheduled"


def test_unattended_security_updates(host, node):
    """security updates apply unattended, platform packages held back, the shutdown helper on GLib"""
    if not node["os_hardening_unattended_upgrades"]:
        pytest.skip("os_hardening_unattended_upgrades is false")
    # python3-gi puts unattended-upgrades' shutdown helper on logind's signal, not on polling.
    missing = [p for p in node["os_hardening_os_unattended_upgrades_packages"] if not host.package(p).is_installed]
    assert not missing, f"not installed: {missing}"
    dump = host.check_output("apt-config dump")

    def values(key: str) -> list[str]:
        return re.findall(rf'^{re.escape(key)}:: "(.*)";$', dump, re.M)

    assert re.search(r'^APT::Periodic::Unattended-Upgrade "1";$', dump, re.M), "unattended upgrades are off"
    assert values("Unattended-Upgrade::Origins-Pattern") == node["os_hardening_unattended_upgrades_origins"]
    assert values("Unattended-Upgrade::Package-Blacklist") == node["os_hardening_unattended_upgrades_blacklist"]
    assert re.search(r'^Unattended-Upgrade::Automatic-Reboot "false";$', dump, re.M), "it may reboot the node"


# --- files next to ours and settings read from them (drift) ----------------------------------


@pytest.mark.parametrize("directory", ["/etc/ssh/sshd_config.d", "/etc/modprobe.d", "/etc/modules-load.d",
                                       "/etc/sysctl.d"])
def test_dropin_dirs_only_ours(host, node, directory):
    """drop-in directories hold only our and the packages' files"""
    from mlops_provision.checks.unmanaged import assert_only_ours, strangers

    found = strangers(host, directory, extra={"99-zz-mlops-provision.conf"})
    assert_only_ours(directory, found, "os_hardening_purge_unmanaged",
                     node["os_hardening_purge_unmanaged"])


def test_login_banner(host, node):
    """login banner shown by sshd and the consoles is the inventory's"""
    assert _sshd(host).get("banner") == "/etc/issue.net", "sshd shows no banner (or another file)"
    for path in ("/etc/issue.net", "/etc/issue"):
        assert host.file(path).content_string == node["os_hardening_ssh_banner"] + "\n", f"{path} differs"
