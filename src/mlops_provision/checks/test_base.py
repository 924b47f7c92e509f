"""Checks for the `base` role."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.roles("base")


def _ca_dest(node, src: str) -> str:
    stem = re.sub(r"\.(pem|crt|cer)$", "", Path(src).name)
    return f"{node['base_os_ca_dir']}/{stem}.crt"


def test_packages(host, node):
    """base packages installed"""
    wanted = node["base_packages"] + node["base_extra_packages"]
    missing = [p for p in wanted if not host.package(p).is_installed]
    assert not missing, f"packages not installed: {', '.join(missing)}"


def test_no_pending_updates(host, node):
    """no pending package updates (security fixes applied)"""
    if not node["base_apt_upgrade"]:
        pytest.skip("base_apt_upgrade is off: updates are the site's own process")
    # Against the node's current package lists: a drift check days later reports new fixes.
    pending = host.run("apt-get -s -o Debug::NoLocking=1 upgrade | awk '/^Inst /{print $2}'")
    assert pending.rc == 0, pending.stderr
    assert not pending.stdout.split(), f"updates not applied: {' '.join(pending.stdout.split()[:20])}"


def test_chrony_running(host, node):
    """chrony running and enabled"""
    svc = host.service(node["base_os_chrony_service"])
    assert svc.is_running, f"{node['base_os_chrony_service']} is not running"
    assert svc.is_enabled, f"{node['base_os_chrony_service']} is not enabled at boot"


def test_chrony_sources(host, node):
    """chrony uses the configured time sources"""
    conf = host.file(node["base_os_chrony_config"]).content_string
    for server in node["base_ntp_servers"]:
        assert f"server {server} iburst" in conf, f"NTP server {server} missing from chrony.conf"
    for pool in node["base_ntp_pools"]:
        assert f"pool {pool} iburst" in conf, f"NTP pool {pool} missing from chrony.conf"


def test_extra_ca_certificates(host, node):
    """site CA certificates installed and trusted"""
    certs = node["base_extra_ca_certificates"]
    if not certs:
        pytest.skip("base_extra_ca_certificates is empty")
    bundle = host.file(node["base_os_ca_bundle"]).content_string
    for src in certs:
        dest = host.file(_ca_dest(node, src))
        assert dest.exists, f"CA certificate {dest.path} is missing"
        local = Path(src).read_bytes()
        assert dest.sha256sum == hashlib.sha256(local).hexdigest(), (
            f"CA certificate {dest.path} differs from {src}")
        body = "".join(local.decode().split("-----")[2].split())
        assert body in "".join(bundle.split()), f"{Path(src).name} is not in {node['base_os_ca_bundle']}"


def test_pip_config(host, node):
    """pip trusts the system CA bundle and uses the configured index"""
    conf = host.file("/etc/pip.conf")
    assert conf.exists, "/etc/pip.conf is missing"
    text = conf.content_string
    assert f"cert = {node['base_os_ca_bundle']}" in text, "pip does not use the system CA bundle"
    if node["base_pip_index_url"]:
        assert f"index-url = {node['base_pip_index_url']}" in text, "pip index-url not configured"
    if node["base_pip_proxy"]:
        assert f"proxy = {node['base_pip_proxy']}" in text, "pip proxy not configured"


def test_apt_proxy(host, node):
    """apt proxy configured as declared"""
    conf = host.file("/etc/apt/apt.conf.d/80mlops-provision-proxy")
    if node["base_apt_proxy"]:
        assert conf.exists and node["base_apt_proxy"] in conf.content_string, "apt proxy not configured"
    else:
        assert not conf.exists, f"{conf.path} exists but base_apt_proxy is empty"


def test_apt_stamps_index_updates(host, node):
    """apt stamps each successful index update, so that cache_valid_time holds between runs (the
    stamp itself appears at the first update after the hook: a node whose index was fresh has none yet)"""
    hook = host.file(node["base_os_apt_update_stamp_conf"])
    assert hook.exists, f"{hook.path} is missing"
    command = f'Post-Invoke-Success {{"touch {node["base_os_apt_update_stamp"]}'
    assert command in hook.content_string, hook.content_string


def test_apt_mirror(host, node):
    """apt uses the site mirror"""
    if not node["base_apt_mirror"]:
        pytest.skip("base_apt_mirror is empty: the node keeps its own apt sources")
    path = node["base_os_apt_sources"]
    sources = host.file(path).content_string
    stanzas = [dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith("#"))
               for block in sources.split("\n\n")]
    release = host.system_info.codename
    assert [s.get("URIs") for s in stanzas][:1] == [node["base_apt_mirror"]], f"{path} does not use base_apt_mirror"
    assert all(s.get("Signed-By") == node["base_os_archive_keyring"] for s in stanzas), f"{path}: Signed-By missing"
    assert {f"{release}-security", release} <= {x for s in stanzas for x in s.get("Suites", "").split()}, sources
    legacy = [line for line in host.file("/etc/apt/sources.list").content_string.splitlines()
              if line.strip() and not line.lstrip().startswith("#")]
    assert not legacy, f"/etc/apt/sources.list still has sources: {legacy}"
    res = host.run("apt-get indextargets --format '$(REPO_URI)' | sort -u")
    assert res.rc == 0 and all(u.startswith(node["base_apt_mirror"].rstrip("/"))
                               or "-security" in u for u in res.stdout.split()), res.stdout


def test_hostname(host, node):
    """hostname is the inventory name"""
    if not node["base_manage_hostname"]:
        pytest.skip("base_manage_hostname is false")
    assert host.check_output("hostname") == node.name


def test_etc_hosts(host, node):
    """every inventory node is in /etc/hosts"""
    if not node["base_manage_etc_hosts"]:
        pytest.skip("base_manage_etc_hosts is false")
    if not node.nodes:
        pytest.skip("no inventory given (MLOPS_INVENTORY): the node list is unknown")
    lines = {tuple(line.split()[:2]) for line in host.file("/etc/hosts").content_string.splitlines()
             if line.strip() and not line.startswith("#")}
    missing = [f"{addr} {name}" for name, addr in sorted(node.nodes.items()) if (addr, name) not in lines]
    assert not missing, f"/etc/hosts lacks: {'; '.join(missing)}"


def test_admin_group(host, node):
    """admin group exists with its sudo rule, sudo's defaults set"""
    group = node["base_admin_group"]
    assert host.group(group).exists, f"group {group} does not exist"
    directory = host.file(node["base_os_sudoers_dir"])
    assert (directory.user, directory.group, directory.mode) == ("root", "root", 0o750), \
        f"{directory.path}: {directory.user}:{directory.group} {directory.mode:o}, expected root:root 750"
    rule = host.file(f"{node['base_os_sudoers_dir']}/mlops-provision")
    assert rule.exists, f"{rule.path} is missing"
    assert rule.mode == 0o440, f"{rule.path} has mode {rule.mode:o}, expected 440"
    text = rule.content_string
    missing = [option for option in node["base_sudo_defaults"] if f"Defaults {option}\n" not in text]
    assert not missing, f"{rule.path} lacks Defaults {missing}"
    granted = f"%{group} ALL=(ALL:ALL) ALL" in text
    assert granted == node["base_admin_group_sudo"], (
        f"{rule.path}: group rule {'present' if granted else 'absent'}, "
        f"base_admin_group_sudo is {node['base_admin_group_sudo']}")


# --- effective state and files next to ours (drift) -----------------------------------------


def test_sudoers_d_only_ours(host, node):
    """sudoers.d holds only our rule and the package's files"""
    from mlops_provision.checks.unmanaged import assert_only_ours, strangers

    found = strangers(host, node["base_os_sudoers_dir"], ours={"mlops-provision"})
    assert_only_ours(node["base_os_sudoers_dir"], found, "base_purge_unmanaged",
                     node["base_purge_unmanaged"])


def test_effective_sudo_rules(host, node):
    """sudo grants rights only to root, sudo and the admin group"""
    from mlops_provision.checks.unmanaged import Unmanaged

    # sudo reads /etc/sudoers and the files of its includedir whose names have no '.' and do not end in '~'.
    text = host.check_output(
        "echo '### /etc/sudoers'; cat /etc/sudoers; for f in /etc/sudoers.d/*; do case ${f##*/} in *.*|*~) ;; *) "
        "[ -f \"$f\" ] && echo \"### $f\" && cat \"$f\";; esac; done; true")
    allowed = {"root", "%sudo", f"%{node['base_admin_group']}"}
    ours = f"{node['base_os_sudoers_dir']}/mlops-provision"
    grants, where = [], "/etc/sudoers"
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith("### "):
            where = line[4:]
            continue
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith(("#include", "@include")) else ""
        if not line or line.startswith(("Defaults", "User_Alias", "Runas_Alias", "Host_Alias", "Cmnd_Alias")):
            continue
        if "=" in line and line.split()[0] not in allowed:
            grants.append((where, line))
    message = f"sudo rules for others (file, rule): {grants}"
    if any(w != ours for w, _ in grants):  # a rule in a file `up` does not write
        raise Unmanaged(message, "remove the rule(s) by hand")
    assert not grants, message


def test_trusted_cas(host, node):
    """trusted CAs: the distribution's and the site's, no other"""
    from mlops_provision.checks.unmanaged import Unmanaged, assert_only_ours, strangers

    local = node["base_os_ca_local_dir"]
    ours_dir = node["base_os_ca_dir"].removeprefix(local + "/")
    found = strangers(host, local, prefix=ours_dir + "/", recurse=True)
    assert_only_ours(local, found, "base_purge_unmanaged", node["base_purge_unmanaged"])
    # The bundle is what update-ca-certificates builds: the enabled certificates of
    # /etc/ca-certificates.conf plus every .crt under /usr/local/share/ca-certificates.
    counts = host.check_output(
        "echo $(grep -c 'BEGIN CERTIFICATE' " + node["base_os_ca_bundle"] + ") "
        "$(( $(grep -c '^[^!#]' /etc/ca-certificates.conf) + $(find " + local + " -name '*.crt' | wc -l) ))").split()
    if counts[0] != counts[1]:
        raise Unmanaged(f"{node['base_os_ca_bundle']} holds {counts[0]} certificates, its sources {counts[1]}: "
                        "a CA was added to the bundle by hand", "run update-ca-certificates --fresh, then drift again")


def test_apt_sources_d_only_ours(host, node):
    """apt sources.list.d holds only our and the distribution's sources"""
    from mlops_provision.checks.unmanaged import assert_only_ours, strangers

    name = node["base_os_apt_sources"].rsplit("/", 1)[-1]
    mine = {name} if node["base_apt_mirror"] else set()
    found = strangers(host, "/etc/apt/sources.list.d", ours=mine, extra={name} - mine)
    assert_only_ours("/etc/apt/sources.list.d", found, "base_purge_unmanaged",
                     node["base_purge_unmanaged"])


def test_platform_names_resolve(host, node):
    """the platform's node names resolve to their inventory addresses"""
    if not node["base_manage_etc_hosts"]:
        pytest.skip("base_manage_etc_hosts is false")
    from mlops_provision.site.values import is_ip

    # Nodes reached by name only (no ansible_host or mlops_node_address, e.g. Molecule's podman
    # connection) have no address to resolve to.
    nodes = {n: a for n, a in node.nodes.items() if is_ip(a)}
    if not nodes:
        pytest.skip("no inventory node has an IP address (ansible_host or mlops_node_address)")
    out = host.run("for n in " + " ".join(sorted(nodes)) + "; do echo \"$n $(getent hosts $n | head -n1)\"; done")
    got = {line.split()[0]: (line.split()[1:2] or ["unresolved"])[0]
           for line in out.stdout.splitlines() if line.strip()}
    wrong = {n: (got.get(n), a) for n, a in nodes.items() if got.get(n) != a}
    text = host.file("/etc/hosts").content_string
    block = text.partition("# BEGIN mlops-provision nodes")[2].partition("# END mlops-provision nodes")[0]
    ours_intact = all(f"{a} {n}" in block for n, a in nodes.items())
    from mlops_provision.checks.unmanaged import Unmanaged

    message = f"getent hosts (got, expected): {wrong}"
    if wrong and ours_intact:  # our block is right: something `up` does not write answers first
        raise Unmanaged(message, "an entry outside the mlops-provision block of /etc/hosts (or nsswitch/DNS) "
                                 "answers first: remove it by hand")
    assert not wrong, message


#: Lines of /etc/hosts that Debian writes (and systemd's hostname line): not drift.
DISTRIBUTION_HOSTS = re.compile(r"^(127\.0\.0\.1\s+localhost\b|127\.0\.1\.1\s|::1\s|ff02::[12]\s|fe00::0\s)")


def _download_names(node) -> set[str]:
    """The names the node downloads from, as the site sets them: the apt mirror(s) (Debian's own
    when none is set), the Python package index (PyPI's when none is set), its trusted hosts."""
    from urllib.parse import urlsplit

    urls = [node.vars.get(k) for k in ("base_apt_mirror", "base_apt_security_mirror", "base_pip_index_url")]
    names = {urlsplit(u).hostname for u in urls if u}
    if not node.vars.get("base_apt_mirror"):
        names |= {"deb.debian.org", "security.debian.org"}
    if not node.vars.get("base_pip_index_url"):
        names |= {"pypi.org", "files.pythonhosted.org"}
    return {n for n in names | set(node.vars.get("base_pip_trusted_hosts") or []) if n}


def test_etc_hosts_only_ours(host, node):
    """/etc/hosts holds only our block and the distribution's lines"""
    if not node["base_manage_etc_hosts"]:
        pytest.skip("base_manage_etc_hosts is false")
    from mlops_provision.checks.unmanaged import Unmanaged

    text = host.file("/etc/hosts").content_string
    before, _, rest = text.partition("# BEGIN mlops-provision nodes")
    outside = before + rest.partition("# END mlops-provision nodes")[2]
    foreign = [line.strip() for line in outside.splitlines()
               if line.strip() and not line.lstrip().startswith("#") and not DISTRIBUTION_HOSTS.match(line.strip())]
    if not foreign:
        return
    downloads = _download_names(node)
    redirected = [line for line in foreign if downloads & set(line.split()[1:])]
    what = f"lines outside the mlops-provision block of /etc/hosts: {'; '.join(foreign)}"
    if redirected:  # a name the node downloads packages from now resolves where the site did not say
        what += (f" (a download source resolves from /etc/hosts, not as the site says: "
                 f"{'; '.join(redirected)})")
    raise Unmanaged(what, "remove the line(s) by hand, or add the names to the inventory")


def test_pip_index_pinned(host, node):
    """pip uses only the configured package index"""
    from mlops_provision.checks.unmanaged import Unmanaged

    keys = {}
    for path in ("/etc/pip.conf", "/etc/xdg/pip/pip.conf"):
        f = host.file(path)
        if f.exists:
            pattern = r"^\s*((?:extra-)?index-url|find-links|trusted-host)\s*=\s*(.*)$"
            keys.update({m.group(1): (path, m.group(2)) for m in re.finditer(pattern, f.content_string, re.M)})
    wanted = {"index-url": node["base_pip_index_url"]} if node["base_pip_index_url"] else {}
    extra = {k: v for k, v in keys.items() if k not in ("index-url", "trusted-host") or
             (k == "index-url" and v[1].strip() != wanted.get("index-url"))}
    # /etc/pip.conf is ours (up rewrites it); a setting in another pip file is not.
    message = f"pip package index settings not from the inventory: {extra}"
    if any(v[0] != "/etc/pip.conf" for v in extra.values()):
        raise Unmanaged(message, "remove them by hand")
    assert not extra, message
