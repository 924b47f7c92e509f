"""The sandbox's Debian image (13 by default, or 12): one debootstrap rootfs per release, cached,
rebuilt when its recipe changes.

The same rootfs becomes a podman image (systemd containers) and a qcow2 base disk plus
kernel/initrd (QEMU VMs). The VM disk also holds the Debian packages of the layers a VM converges
(``VM_PACKAGES``), installed natively at build time: under TCG, dpkg is most of a VM's converge.
It keeps apt's package lists of that install and the package cache built from them (fresh when
the image is new, as in a CI run: the base role's `apt-get update` then waits for them to age,
``base_apt_cache_valid_time``), and this
machine's CA certificates where the base role installs them (``HOST_CA_GLOB``), the trust store
rebuilt natively. Containers keep the bare rootfs, so every install the roles make is proven there.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from mlops_provision.paths import cache_dir, roles_dir
from mlops_provision.releases import CURRENT, RELEASES

FILES = Path(__file__).resolve().parent / "files"
#: The Debian releases the sandbox builds (every release the roles support), by number, and
#: their suites (mlops_provision.releases); the default is Debian's current stable.
DEFAULT_RELEASE = CURRENT
SUITE = RELEASES[DEFAULT_RELEASE]
PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "udev", "kmod", "e2fsprogs",
    "python3", "python3-apt", "sudo", "ca-certificates", "iproute2",
    "openssh-server", "procps",
]
#: The kernel, installed after debootstrap from the release's current sources (security fixes
#: included; files/post-debootstrap.sh): one kernel and one initramfs build, not the release's
#: first kernel replaced by its update.
KERNEL_PACKAGE = "linux-image-amd64"
#: The Debian packages the kernel-side layers install (base; hardening with its audit, firewall and
#: volume roles; containerd; node-exporter with the IPMI exporter: tests/integration/test_vm.py's
#: converge), preinstalled on the VM disk. Under TCG the install tasks were 647 of a Debian 13 VM
#: converge's 894 s (measured 2026-12-06, benchmarks/profile_run.py); here dpkg runs natively. The
#: roles' install tasks still run on VMs and find their packages installed. Each name is one a role
#: installs (tests/unit/test_sandbox.py), with Recommends where the role installs them.
VM_PACKAGES_WITH_RECOMMENDS = ["ca-certificates", "chrony", "curl", "gnupg", "jq", "lsof", "rsync", "sudo"]
VM_PACKAGES = [
    "libpam-tmpdir", "debsums", "apt-show-versions", "acct", "sysstat", "libpam-pwquality", "lynis",
    "unattended-upgrades", "python3-gi", "auditd", "audispd-plugins", "nftables", "netcat-openbsd", "cryptsetup",
    "xfsprogs", "containerd", "runc", "prometheus-node-exporter", "prometheus-ipmi-exporter",
    "freeipmi-tools",
]
#: Release differences: Debian 13 ships systemd-cryptsetup apart from systemd.
VM_PACKAGES_BY_RELEASE = {"13": ["systemd-cryptsetup"]}
#: This machine's own CA certificates (a TLS-inspecting egress proxy's, say): the sandbox inventory's
#: ``base_extra_ca_certificates``, so that the nodes reach PyPI through such a proxy.
HOST_CA_GLOB = "/usr/local/share/ca-certificates/*.crt"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
ROOT_DISK_SIZE = "6G"


def host_debian_mirror() -> str:
    """The Debian mirror this machine's apt already uses (first ``URIs:``/``deb`` entry)."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            m = re.match(r"\s*(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?\s*", line)
            if m:
                return m.group(1)
    return DEFAULT_MIRROR


@dataclass
class Recipe:
    mirror: str = field(default_factory=host_debian_mirror)
    suite: str = SUITE
    packages: list[str] = field(default_factory=lambda: list(PACKAGES))
    kernel: str = KERNEL_PACKAGE
    disk_size: str = ROOT_DISK_SIZE

    def digest(self) -> str:
        h = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode())
        for f in sorted(FILES.iterdir()):
            h.update(f.name.encode())
            h.update(f.read_bytes())
        h.update(Path(__file__).read_bytes())
        return h.hexdigest()[:12]


@dataclass
class Image:
    recipe: Recipe
    root: Path

    @property
    def tag(self) -> str:
        return f"localhost/mlops-provision/node:{self.recipe.digest()}"

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def base_disk(self) -> Path:
        return self.root / "base.qcow2"

    @property
    def kernel(self) -> Path:
        return self.root / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.root / "initrd.img"


Log = Callable[[str], None]


def release_of(suite: str) -> str:
    return next((number for number, name in RELEASES.items() if name == suite), suite)


def image_for(recipe: Recipe | None = None, release: str | None = None) -> Image:
    """The image of ``recipe``, or of the default recipe for ``release`` ("12", "13")."""
    if recipe is None:
        recipe = Recipe(suite=RELEASES[release or DEFAULT_RELEASE])
    return Image(recipe, cache_dir() / "images" / f"debian{release_of(recipe.suite)}-{recipe.digest()}")


def _run(cmd: list[str], log: Log, **kw) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def _version_key(path: Path) -> list[int | str]:
    """Sort key that orders vmlinuz-6.1.0-9-amd64 before vmlinuz-6.1.0-56-amd64."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def ensure_rootfs(image: Image, log: Log = print) -> Path:
    done = image.root / "rootfs.done"
    if done.exists():
        return image.rootfs
    r = image.recipe
    tmp = image.root / "rootfs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.monotonic()
    log(f"building the sandbox image (debootstrap {r.suite} from {r.mirror}); this takes a few minutes")
    _run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(r.packages)}",
         r.suite, str(tmp), r.mirror],
        log, stdout=subprocess.DEVNULL,
    )
    shutil.copy(FILES / "mlops-seed", tmp / "usr/local/sbin/mlops-seed")
    shutil.copy(FILES / "mlops-seed.service", tmp / "etc/systemd/system/mlops-seed.service")
    shutil.copy(FILES / "10-eth0.network", tmp / "etc/systemd/network/10-eth0.network")
    shutil.copy(FILES / "post-debootstrap.sh", tmp / "tmp/post-debootstrap.sh")
    _run(["chroot", str(tmp), "sh", "/tmp/post-debootstrap.sh", r.mirror, r.suite, r.kernel], log)
    (tmp / "tmp/post-debootstrap.sh").unlink()
    shutil.rmtree(image.rootfs, ignore_errors=True)
    tmp.rename(image.rootfs)
    (image.root / "recipe.json").write_text(json.dumps(asdict(r), indent=2))
    done.write_text(f"{time.monotonic() - t0:.0f}\n")
    log(f"rootfs built in {time.monotonic() - t0:.0f} s")
    return image.rootfs


def ensure_container_image(image: Image, log: Log = print) -> str:
    probe = subprocess.run(["podman", "image", "exists", image.tag])
    if probe.returncode == 0:
        return image.tag
    rootfs = ensure_rootfs(image, log)
    log(f"importing {image.tag} into podman")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["podman", "import",
         "--change", 'CMD ["/sbin/init"]',
         "--change", "STOPSIGNAL SIGRTMIN+3",
         "--change", "ENV container=podman",
         "-", image.tag],
        stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL,
    )
    if tar.wait() != 0:
        raise RuntimeError("tar of the sandbox rootfs failed")
    return image.tag


def vm_packages(release: str) -> tuple[list[str], list[str]]:
    """The packages preinstalled on a VM disk of ``release``: (with Recommends, without)."""
    return list(VM_PACKAGES_WITH_RECOMMENDS), VM_PACKAGES + VM_PACKAGES_BY_RELEASE.get(release, [])


def _install_vm_packages(root: Path, release: str, log: Log) -> None:
    """Install ``vm_packages`` into the copy of the rootfs at ``root`` (chroot, natively). No
    service starts (policy-rc.d). apt's lists stay, and the package cache built from them: under
    TCG an `apt-get update` takes a minute or more (the base role runs it once the lists are older
    than its cache_valid_time), and so does building the cache (the first apt task would)."""
    with_recommends, without = vm_packages(release)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    resolv = root / "etc/resolv.conf"
    own_resolv = resolv.read_text()
    shutil.copy("/etc/resolv.conf", resolv)  # the image's own names QEMU's DNS, not this machine's
    install = "apt-get install -y -qq -o Dpkg::Options::=--force-confold"
    script = (f"apt-get update -qq && {install} {' '.join(with_recommends)} >/dev/null"
              f" && {install} --no-install-recommends {' '.join(without)} >/dev/null"
              " && apt-get clean && apt-cache gencaches >/dev/null")
    try:
        _run(["chroot", str(root), "sh", "-c", script], log, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    finally:
        policy.unlink()
        resolv.write_text(own_resolv)


def base_role_ca_dir() -> str:
    """Where the base role installs the site's extra CA certificates (its ``base_os_ca_dir``)."""
    return yaml.safe_load((roles_dir() / "base" / "vars" / "Debian.yml").read_text())["base_os_ca_dir"]


def _install_host_ca_certificates(root: Path, log: Log) -> None:
    """This machine's CA certificates (``HOST_CA_GLOB``, the sandbox inventory's
    ``base_extra_ca_certificates``) on the VM disk where and as the base role installs them (root,
    0644, in ``base_os_ca_dir``), and the trust store rebuilt natively: under TCG
    update-ca-certificates forks hundreds of processes (37 s on an idle VM, 80 s with both VMs
    converging). The role's copy then finds them in place and its handler has nothing to do; a
    certificate changed since the build is replaced by the role, as on any node."""
    certs = sorted(glob.glob(HOST_CA_GLOB))
    if not certs:
        return
    dest = root / base_role_ca_dir().lstrip("/")
    dest.mkdir(mode=0o755, parents=True, exist_ok=True)
    for cert in certs:
        shutil.copyfile(cert, dest / Path(cert).name)
        (dest / Path(cert).name).chmod(0o644)
    _run(["chroot", str(root), "update-ca-certificates"], log, stdout=subprocess.DEVNULL)


def ensure_vm_image(image: Image, log: Log = print) -> Image:
    if image.base_disk.exists() and image.kernel.exists() and image.initrd.exists():
        return image
    rootfs = ensure_rootfs(image, log)
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"), key=_version_key)
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"), key=_version_key)
    if not kernels or not initrds:
        raise RuntimeError(f"no kernel/initrd in {rootfs / 'boot'}")
    shutil.copy(kernels[-1], image.kernel)
    shutil.copy(initrds[-1], image.initrd)
    t0 = time.monotonic()
    vmroot = image.root / "vmroot.tmp"
    shutil.rmtree(vmroot, ignore_errors=True)
    _run(["cp", "-a", str(rootfs), str(vmroot)], log)
    log("installing the kernel-side layers' packages on the VM disk (natively, not under emulation)")
    _install_vm_packages(vmroot, release_of(image.recipe.suite), log)
    _install_host_ca_certificates(vmroot, log)
    raw = image.root / "base.raw"
    _run(["mkfs.ext4", "-q", "-F", "-L", "mlops-root", "-d", str(vmroot), str(raw),
          image.recipe.disk_size], log)
    shutil.rmtree(vmroot)
    tmp = image.root / "base.qcow2.tmp"
    _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp)], log)
    raw.unlink()
    tmp.rename(image.base_disk)
    log(f"VM disk built in {time.monotonic() - t0:.0f} s")
    return image
