#!/bin/sh
# Runs inside the fresh debootstrap rootfs (chroot). $1: Debian mirror, $2: suite, $3: the kernel
# package.
set -eu
mirror="$1"; suite="$2"; kernel="$3"
security="$(echo "$mirror" | sed 's#/debian/*$#/debian-security#')"
cat > /etc/apt/sources.list <<SRC
deb $mirror $suite main contrib non-free non-free-firmware
deb $mirror $suite-updates main contrib non-free non-free-firmware
deb $security $suite-security main contrib non-free non-free-firmware
SRC
# Current packages (security fixes included) from the start, the way the base role upgrades
# (new packages allowed). Otherwise the base role installs a kernel security update on every
# test host and builds its initramfs, which costs 10+ minutes under TCG (measured: 10.5 min on
# a VM, 2026-11-28). The kernel comes from these sources too, so a node has one kernel, as
# installed (the one sandbox VMs boot; the GPU layer's DKMS compiles its module once), and its
# initramfs is built once.
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o Dpkg::Options::=--force-confold \
    upgrade --with-new-pkgs >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o Dpkg::Options::=--force-confold \
    install "$kernel" >/dev/null
echo mlops-node > /etc/hostname
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts
# QEMU user-mode DNS; containers get podman's resolv.conf bind-mounted over it.
echo 'nameserver 10.0.2.3' > /etc/resolv.conf
: > /etc/fstab
chmod 0755 /usr/local/sbin/mlops-seed
systemctl enable mlops-seed.service systemd-networkd.service
systemctl mask systemd-networkd-wait-online.service systemd-remount-fs.service \
    getty@tty1.service console-getty.service
# Test hosts run under software emulation: skip documentation and man-db rebuilds, which
# dominate dpkg time there. (A sandbox trait only: roles never rely on it.)
cat > /etc/dpkg/dpkg.cfg.d/01-mlops-sandbox-nodoc <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
DPKG
# Nor sync every unpacked file to disk: a throwaway test host loses nothing by it (Docker's
# Debian images did the same), and under emulation each sync is a journal commit the CPU emulates.
echo 'force-unsafe-io' > /etc/dpkg/dpkg.cfg.d/02-mlops-sandbox-unsafe-io
echo 'Acquire::Languages "none";' > /etc/apt/apt.conf.d/99-mlops-sandbox
# Sandbox VMs boot the kernel and initrd extracted at build time (QEMU -kernel/-initrd), never
# the node's own initramfs: rebuilding it on every package install costs 10+ minutes under TCG.
sed -i 's/^update_initramfs=.*/update_initramfs=no/' /etc/initramfs-tools/update-initramfs.conf
echo 'man-db man-db/auto-update boolean false' | debconf-set-selections
rm -f /var/lib/man-db/auto-update
apt-get clean
rm -rf /var/lib/apt/lists/*
mkdir -p /var/lib/apt/lists/partial
# An empty list dir dated 1970: apt's cache_valid_time must not believe the cache is fresh.
touch -d @0 /var/lib/apt/lists
: > /etc/machine-id
