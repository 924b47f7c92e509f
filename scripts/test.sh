#!/usr/bin/env bash
# The whole test suite: lint, unit tests, integration tests on real sandbox hosts
# (containers and QEMU VMs), and the Molecule scenario. Installs what it needs.
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

# One fresh converge per layer and kind (tests/integration/conftest.py): the container tests share
# one 3-node sandbox, converged once; test_vm is the one VM converge (idempotence, reboot, Tang).
stage "pytest (unit + integration)"
pytest tests --durations=25

# The role-level Molecule path (plain ansible-playbook on Molecule's own inventory): converge,
# idempotence, verify on a systemd container.
stage "molecule default"
molecule test -s default
