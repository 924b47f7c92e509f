#!/usr/bin/env bash
# The whole test suite: lint, unit tests, integration tests on real sandbox hosts
# (containers and QEMU VMs), and the Molecule scenarios. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== lint"
ruff check src tests benchmarks
yamllint -s .
ansible-lint --profile production --offline -q

echo "== sandbox image (built once, shared by the integration tests and Molecule)"
MLOPS_SANDBOX_IMAGE=$(mlops-provision sandbox image --kind container)
export MLOPS_SANDBOX_IMAGE
mlops-provision sandbox image --kind vm >/dev/null

echo "== pytest (unit + integration)"
pytest tests

echo "== molecule"
molecule test -s default
# Hardening on a QEMU VM: converge, idempotence, verify, reboot, verify again (~15 min under TCG).
molecule test -s vm
