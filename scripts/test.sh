#!/usr/bin/env bash
# The whole test suite: lint, unit tests, integration tests on real sandbox hosts
# (containers and QEMU VMs), and the Molecule scenarios. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage's wall time, so that the CI budget (90 min on 2 cores) stays visible.
stage() { echo "== $1 (at ${SECONDS}s)"; }
trap 'echo "== total ${SECONDS}s"' EXIT
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

stage lint
ruff check src tests benchmarks
yamllint -s .
ansible-lint --profile production --offline -q

stage "sandbox image (built once, shared by the integration tests and Molecule)"
MLOPS_SANDBOX_IMAGE=$(mlops-provision sandbox image --kind container)
export MLOPS_SANDBOX_IMAGE
mlops-provision sandbox image --kind vm >/dev/null

stage "pytest (unit + integration)"
pytest tests --durations=15

stage "molecule default"
molecule test -s default
stage "molecule vm"
# Hardening on a QEMU VM: converge, idempotence, verify, reboot, verify again (~15 min under TCG).
molecule test -s vm
