"""The sandbox's generated inventory and state (no podman or QEMU needed): MLflow's secrets are
random and vault-encrypted, kept across `sandbox up`, and the CLI finds the vault password."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from mlops_provision.sandbox import image
from mlops_provision.sandbox.core import (
    InventoryLoader,
    Node,
    Sandbox,
    State,
    VaultText,
    node_groups,
    sandbox_vault_password,
)
from mlops_provision.sandbox.image import _version_key, vm_packages
from mlops_provision.site import load
from tests.conftest import mp


def _sandbox(tmp_path: Path) -> tuple[Sandbox, State]:
    box = Sandbox(tmp_path)
    box.dir.mkdir(parents=True)
    nodes = [Node(name=f"node{i}", ssh_port=2200 + i, address=f"10.213.7.{10 + i}", groups=node_groups(i),
                  ports={"https": 8443, "http": 8080} if i == 1 else {}) for i in (1, 2)]
    state = State(kind="container", image="test", nodes=nodes)
    box.write_inventory(state)
    return box, state


def _mlflow_vars(box: Sandbox) -> dict:
    data = yaml.load(box.inventory.read_text(), Loader=InventoryLoader)
    return data["all"]["children"]["mlflow"]["vars"]


def test_mlflow_secrets_are_vault_encrypted_and_valid(tmp_path: Path) -> None:
    box, _ = _sandbox(tmp_path)
    found = sandbox_vault_password(box.inventory)
    assert found == box.dir / "vault-password" and found.stat().st_mode & 0o077 == 0
    mv = _mlflow_vars(box)
    assert isinstance(mv["mlflow_admin_password"], VaultText) and isinstance(mv["mlflow_db_password"], VaultText)
    assert "localhost" in mv["mlflow_extra_server_names"]
    assert mv["mlflow_ca_certificate_path"] == str(box.dir / "mlflow-ca.crt")
    vault = VaultLib([("default", VaultSecret(found.read_bytes().strip()))])
    admin = vault.decrypt(str(mv["mlflow_admin_password"]).strip()).decode()
    assert len(admin) >= 24 and admin != vault.decrypt(str(mv["mlflow_db_password"]).strip()).decode()
    inv = load(box.inventory, vault_password_file=found)
    assert inv.hostvars("node1")["mlflow_admin_password"] == admin
    assert "mlflow_admin_password" not in inv.hostvars("node2")


def test_secrets_survive_a_rewrite(tmp_path: Path) -> None:
    box, state = _sandbox(tmp_path)
    before = _mlflow_vars(box)
    box.write_inventory(state)  # what every `sandbox up` does
    assert _mlflow_vars(box) == before


def test_every_group_of_the_secret_table_gets_its_secrets(tmp_path: Path, monkeypatch) -> None:
    """The sandbox generates the secrets of every group in GROUP_SECRETS, not only MLflow's."""
    from mlops_provision.site.rules import GROUP_SECRETS

    monkeypatch.setitem(GROUP_SECRETS, "cpu_workers", ("demo_token",))
    box, _ = _sandbox(tmp_path)
    data = yaml.load(box.inventory.read_text(), Loader=InventoryLoader)
    assert isinstance(data["all"]["children"]["cpu_workers"]["vars"]["demo_token"], VaultText)
    assert "vars" not in data["all"]["children"]["control_plane"]


def test_cli_finds_the_sandbox_vault_password(tmp_path: Path) -> None:
    box, _ = _sandbox(tmp_path)
    res = mp("validate", "-i", box.inventory)
    assert res.rc == 0, res.stderr
    copy = tmp_path / "elsewhere" / "inventory.yml"
    copy.parent.mkdir()
    copy.write_text(box.inventory.read_text())
    assert sandbox_vault_password(copy) is None
    res = mp("validate", "-i", copy)
    assert res.rc == 2 and "no vault password was given" in " ".join(res.stderr.split())


def test_published_ports(tmp_path: Path) -> None:
    box, state = _sandbox(tmp_path)
    assert state.nodes[0].published() == {8443: 443, 8080: 80}
    assert state.nodes[1].published() == {}
    state.save(box.state_file)
    assert State.load(box.state_file).nodes[0].ports == {"https": 8443, "http": 8080}


def test_vm_boots_the_newest_kernel_of_the_image() -> None:
    boot = [Path(f"/boot/vmlinuz-6.1.0-{abi}-amd64") for abi in (9, 56, 10)]
    assert sorted(boot, key=_version_key)[-1].name == "vmlinuz-6.1.0-56-amd64"


def test_a_node_that_does_not_answer_is_unreachable_not_bad_input(tmp_path: Path) -> None:
    """SSH timeout: exit 3 (a host that does not answer), with the node and its port named."""
    import subprocess

    import pytest

    from mlops_provision.errors import EXIT_UNREACHABLE
    from mlops_provision.sandbox import SandboxUnreachable
    from mlops_provision.sandbox.model import free_port

    box, state = _sandbox(tmp_path)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(box.key)], check=True)
    state.nodes = state.nodes[:1]
    state.nodes[0].ssh_port = free_port()  # nothing listens there
    with pytest.raises(SandboxUnreachable) as err:
        box.wait_for_ssh(state, timeout=0)
    assert err.value.exit_code == EXIT_UNREACHABLE
    assert f"node1 did not answer SSH on 127.0.0.1:{state.nodes[0].ssh_port}: within 0 s" in str(err.value)


def test_a_vm_whose_qemu_is_gone_fails_at_once_with_its_console(tmp_path: Path) -> None:
    """A node that stopped is not waited for until the timeout: the error comes at once, with
    what the backend knows of it (here the end of the VM's serial console)."""
    import subprocess
    import time

    import pytest

    from mlops_provision.sandbox import SandboxUnreachable
    from mlops_provision.sandbox.model import free_port

    box, state = _sandbox(tmp_path)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(box.key)], check=True)
    state.kind = "vm"
    node = state.nodes[0]
    state.nodes = [node]
    node.ssh_port = free_port()  # nothing listens there
    vm_dir = box.dir / "vm"
    vm_dir.mkdir()
    (vm_dir / "node1.pid").write_text("999999999\n")  # no such process
    node.pid_file = str(vm_dir / "node1.pid")
    (vm_dir / "node1-console.log").write_text("booting\nKernel panic - not syncing: VFS\n")
    t0 = time.monotonic()
    with pytest.raises(SandboxUnreachable) as err:
        box.wait_for_ssh(state, timeout=600)
    assert time.monotonic() - t0 < 60
    assert "stopped" in err.value.message
    assert "node1: QEMU stopped" in err.value.details
    assert "console: Kernel panic - not syncing: VFS" in err.value.details


def test_a_failed_image_build_step_is_a_sandbox_error() -> None:
    """A build command that fails becomes SandboxError (exit 1) naming the command and its stderr."""
    import subprocess

    import pytest

    from mlops_provision.sandbox import SandboxError
    from mlops_provision.sandbox.core import _image_step

    with pytest.raises(SandboxError) as err:
        _image_step(lambda: subprocess.run(["ls", "/no/such/dir"], check=True, capture_output=True))
    assert err.value.exit_code == 1
    assert "`ls /no/such/dir` exited" in err.value.message and err.value.details


def test_sandbox_modules_import_no_circle() -> None:
    """backend, model, image, errors, site_inventory never import core or the backends."""
    import ast

    import mlops_provision.sandbox as pkg

    root = Path(pkg.__file__).parent
    leaves = {"backend", "model", "image", "errors", "site_inventory"}
    for name in leaves:
        tree = ast.parse((root / f"{name}.py").read_text())
        imported = {n.module.rsplit(".", 1)[-1] for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("mlops_provision.sandbox")}
        assert not imported & {"core", "containers", "vms"}, (name, imported)


def test_container_nodes_need_inotify_instances(tmp_path: Path) -> None:
    """Past fs.inotify.max_user_instances a node's systemd never boots: refused up front (exit 2)
    with the sysctl to raise, never a node that hangs."""
    import pytest

    from mlops_provision.sandbox import SandboxBadInput, containers

    backend = containers.ContainerBackend(tmp_path, tmp_path / "key.pub")
    limit = int(containers.INOTIFY_LIMIT.read_text())
    fits = (limit - containers.INOTIFY_HEADROOM) // containers.INOTIFY_PER_NODE
    backend.check_host(min(fits, 3))
    with pytest.raises(SandboxBadInput) as err:
        backend.check_host(fits + 1)
    assert "fs.inotify.max_user_instances" in err.value.hint and err.value.exit_code == 2


def test_each_debian_release_has_its_own_image_and_a_sandbox_keeps_its_release(tmp_path: Path) -> None:
    from mlops_provision.sandbox.errors import SandboxBadInput
    from mlops_provision.sandbox.image import RELEASES, image_for

    twelve, thirteen = image_for(release="12"), image_for(release="13")
    assert (twelve.recipe.suite, thirteen.recipe.suite) == ("bookworm", "trixie") == (RELEASES["12"], RELEASES["13"])
    assert twelve.tag != thirteen.tag and twelve.root.name.startswith("debian12-")
    assert thirteen.root.name.startswith("debian13-")
    box = Sandbox(tmp_path)
    box.dir.mkdir(parents=True)
    State(kind="container", image="x", release="12",
          nodes=[Node(name="node1", ssh_port=1, address="10.0.0.1", groups=[])]).save(box.state_file)
    with pytest.raises(SandboxBadInput, match="Debian 12"):
        box.check_request(1, "container", "13")
    with pytest.raises(SandboxBadInput, match="unknown Debian release '11'"):
        box.check_request(1, "container", "11")


def test_a_mixed_sandbox_gives_each_node_its_release_and_image(tmp_path: Path, monkeypatch) -> None:
    """`--release 12 --release 13`: node1 on 12, every later node on 13, each VM booted from its
    release's disk and kernel; the state keeps them and a request for other releases is refused."""
    from mlops_provision.sandbox import vms
    from mlops_provision.sandbox.errors import SandboxBadInput
    from mlops_provision.sandbox.image import image_for
    from mlops_provision.sandbox.model import describe_releases, node_releases

    assert node_releases(3, ["12", "13"]) == ["12", "13", "13"]
    assert node_releases(2, "13") == ["13", "13"] and node_releases(1, ["12", "13"]) == ["12"]
    assert describe_releases(["12", "13", "13"]) == "Debian 12 and 13" and describe_releases(["13"]) == "Debian 13"
    box = Sandbox(tmp_path)
    box.dir.mkdir(parents=True)
    state = State(kind="vm", image="x", release="12",
                  nodes=[Node(name=f"node{i}", ssh_port=2200 + i, address=f"10.213.8.{10 + i}",
                              groups=node_groups(i), release=r) for i, r in ((1, "12"), (2, "13"))])
    state.save(box.state_file)
    assert State.load(box.state_file).releases() == ["12", "13"]
    old = State(kind="vm", image="x", release="12", nodes=[Node(name="node1", ssh_port=1, address="a", groups=[])])
    assert old.releases() == ["12"]  # a state file from before per-node releases
    backend = box.backend("vm")
    with pytest.raises(SandboxBadInput, match=r"2 node\(s\) \(Debian 12 and 13\)"):
        box.check_request(2, "vm", ["13"])
    with pytest.raises(SandboxBadInput, match="3 releases for 2 node"):
        box.check_request(2, "vm", ["12", "13", "13"])
    started: list[list[str]] = []
    monkeypatch.setattr(vms, "_run", lambda cmd, what, **kw: started.append([str(c) for c in cmd]))
    monkeypatch.setattr(vms.VmBackend, "_ensure_switch", lambda self: tmp_path / "vde.ctl")
    images = {r: image_for(release=r) for r in ("12", "13")}
    box._ensure_key()
    backend.start(state, images)
    qemu = {cmd[cmd.index("-name") + 1]: cmd for cmd in started if cmd[0] == "qemu-system-x86_64"}
    disks = {cmd[-1].split("/")[-1]: cmd[cmd.index("-b") + 1] for cmd in started if "-b" in cmd}
    for node, release in (("node1", "12"), ("node2", "13")):
        assert qemu[node][qemu[node].index("-kernel") + 1] == str(images[release].kernel)
        assert disks[f"{node}-root.qcow2"] == str(images[release].base_disk)


def _role_packages(release: str) -> set[str]:
    """Every Debian package name the roles install on ``release``: the lists in their defaults and
    vars (other releases' vars files left out) and the literal names in their apt tasks."""
    names: set[str] = set()

    def collect(value, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                collect(v, str(k))
        elif isinstance(value, list):
            for v in value:
                collect(v, key)
        elif isinstance(value, str) and "packages" in key:
            names.add(value)

    roles = Path(__file__).resolve().parents[2] / "roles"
    for path in [*roles.glob("*/defaults/main.yml"), *roles.glob("*/vars/*.yml")]:
        if path.parent.name == "vars" and path.stem.startswith("Debian-") and path.stem != f"Debian-{release}":
            continue
        collect(yaml.safe_load(path.read_text()) or {})
    for path in roles.glob("*/tasks/*.yml"):
        for task in yaml.safe_load(path.read_text()) or []:
            for block in [task, *task.get("block", [])]:
                apt = block.get("ansible.builtin.apt") or {}
                if isinstance(apt.get("name"), str):
                    names.update(re.findall(r"'([a-z0-9][a-z0-9.+-]+)'", apt["name"]))
    return names


@pytest.mark.parametrize("release", ["12", "13"])
def test_the_vm_disk_holds_only_packages_the_roles_install(release: str) -> None:
    """The VM disk's preinstalled packages save dpkg under emulation; each is one a role installs on
    that release (a renamed or dropped package fails here, not as a silent extra on every VM)."""
    with_recommends, without = vm_packages(release)
    extra = set(with_recommends + without) - _role_packages(release)
    assert not extra, f"preinstalled on Debian {release} VMs but installed by no role: {sorted(extra)}"
    assert ("systemd-cryptsetup" in without) == (release == "13")


@pytest.mark.parametrize(("kind", "seconds"), [("container", 10), ("vm", 60)])
def test_ssh_waits_as_long_as_the_kind_needs(tmp_path: Path, kind: str, seconds: int) -> None:
    """A TCG VM on busy cores can take over 10 s to answer SSH: its inventory gives it a longer
    ``ansible_timeout`` (Ansible, and verify: test_verify_plugin), and so does the sandbox's own SSH."""
    box = Sandbox(tmp_path)
    box.dir.mkdir(parents=True)
    node = Node(name="node1", ssh_port=2201, address="10.213.8.11", groups=node_groups(1), ports={})
    state = State(kind=kind, image="test", nodes=[node])
    box.write_inventory(state)
    hostvars = load(box.inventory, vault_password_file=sandbox_vault_password(box.inventory)).hostvars("node1")
    assert hostvars["ansible_timeout"] == seconds
    assert f"ConnectTimeout={seconds}" in box.backend(kind).ssh(node, box.key)


def test_the_vm_disk_holds_the_host_cas_as_the_base_role_installs_them(tmp_path: Path, monkeypatch) -> None:
    """This machine's CA certificates (the sandbox inventory's base_extra_ca_certificates) land in
    the base role's own directory, named and moded as its copy task makes them, and the trust store
    is rebuilt in the chroot: the role's copy then changes nothing, so its handler does not run."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "proxy.crt").write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    monkeypatch.setattr(image, "HOST_CA_GLOB", str(host / "*.crt"))
    ran = []
    monkeypatch.setattr(image, "_run", lambda cmd, log, **kw: ran.append(cmd))
    root = tmp_path / "root"
    image._install_host_ca_certificates(root, print)
    role = yaml.safe_load((Path(__file__).resolve().parents[2] / "roles/base/vars/Debian.yml").read_text())
    installed = root / role["base_os_ca_dir"].lstrip("/") / "proxy.crt"
    assert installed.read_text() == (host / "proxy.crt").read_text()
    assert installed.stat().st_mode & 0o777 == 0o644
    assert ran == [["chroot", str(root), "update-ca-certificates"]]


def test_a_vm_boots_the_kernel_options_its_inventory_gives_the_roles(tmp_path: Path, monkeypatch) -> None:
    """QEMU passes the audit and hardening kernel options that the VM sandbox's inventory gives the
    roles (read as Ansible reads it): the role's default list, less page-table isolation only."""
    from mlops_provision.sandbox import vms

    box = Sandbox(tmp_path)
    box.dir.mkdir(parents=True)
    node = Node(name="node1", ssh_port=2201, address="10.213.8.11", groups=node_groups(1), ports={})
    state = State(kind="vm", image="test", release="13", nodes=[node])
    box.write_inventory(state)
    hostvars = load(box.inventory, vault_password_file=sandbox_vault_password(box.inventory)).hostvars("node1")
    roles = Path(__file__).resolve().parents[2] / "roles"
    defaults = yaml.safe_load((roles / "os_hardening/defaults/main.yml").read_text())
    audit = yaml.safe_load((roles / "audit/defaults/main.yml").read_text())["audit_kernel_args"]
    wanted = defaults["os_hardening_kernel_cmdline"]
    assert "pti=on" in wanted
    assert hostvars["os_hardening_kernel_cmdline"] == [a for a in wanted if a != "pti=on"]
    started: list[list[str]] = []
    monkeypatch.setattr(vms, "_run", lambda cmd, what, **kw: started.append([str(c) for c in cmd]))
    monkeypatch.setattr(vms.VmBackend, "_ensure_switch", lambda self: tmp_path / "vde.ctl")
    box._ensure_key()
    box.backend("vm").start(state, {"13": image.image_for(release="13")})
    qemu = next(cmd for cmd in started if cmd[0] == "qemu-system-x86_64")
    booted = qemu[qemu.index("-append") + 1].split()
    assert booted[-len(hostvars["os_hardening_kernel_cmdline"]):] == hostvars["os_hardening_kernel_cmdline"]
    assert set(audit) <= set(booted) and "pti=on" not in booted
