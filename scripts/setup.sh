#!/usr/bin/env bash
# Install everything mlops-provision needs on a Debian 12 admin machine (run as root):
# the sandbox's host packages, then a virtualenv in .venv with the package and its dev tools, and
# promtool (from Debian's prometheus package) for the monitoring rules' tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# testssl.sh: the third-party TLS auditor the integration tests run against MLflow's endpoint.
APT_PACKAGES=(podman runc debootstrap qemu-system-x86 qemu-utils vde2 openssh-client e2fsprogs testssl.sh)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.mlops-provision-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing mlops-provision and its dev tools into .venv"
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[dev]'
    touch "$stamp"
fi

# promtool: checks and unit-tests the monitoring layer's Prometheus rules (tests/unit/test_alert_rules.py).
# Taken out of Debian's prometheus package without installing it: the admin machine runs no Prometheus.
if [ ! -x .venv/bin/promtool ]; then
    echo "setup: extracting promtool from Debian's prometheus package into .venv/bin"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
        apt-get update -qq
        (cd "$tmp" && apt-get download prometheus >/dev/null)
    fi
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
    install -m 0755 "$tmp/root/usr/bin/promtool" .venv/bin/promtool
    rm -rf "$tmp"
    trap - EXIT
fi
echo "setup: ready (.venv/bin/mlops-provision)"
