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

# Lint and the unit tests run beside the sandbox image build (below); then two lanes at once,
# each as soon as its images exist. A QEMU VM under TCG keeps about one of the two cores busy
# (measured: 55 % user CPU during a VM converge), so the VM module runs beside the rest instead
# of after it:
#   containers: the container modules (one shared 3-node Debian 12 sandbox, converged once:
#               tests/integration/conftest.py, at the end upgraded to Debian 13 in place); it
#               starts when the container images are built, while the VM images are still built;
#   vm:         the VM images, then test_vm, the one VM converge: a Debian 12 and a Debian 13 VM
#               (the kernel side of both releases and a reboot of each; check/real agreement and
#               Tang on the Debian 12 one), then Molecule's role-level path on a fresh Debian 13
#               node (plain ansible-playbook under stock Ansible on Molecule's own inventory:
#               converge, idempotence, verify on a podman container of its own, reached over
#               SSH), which fits in the time the VM lane leaves before the containers lane ends.
#               Molecule runs even when test_vm fails.
# Each lane's lines are prefixed with its name; each lane's log is kept and its summary repeated
# at the end. The suite fails if any lane fails. Its time on a fresh clone: docs/performance.md.
logs=$(mktemp -d /tmp/mlops-test-logs.XXXXXX)
mkdir -p /tmp/mlops-tests
lane() {  # lane NAME COMMAND...: run it, its output prefixed live and kept in $logs/NAME.log
  local name=$1; shift
  { local rc=0; "$@" 2>&1 || rc=$?; echo "== lane $name exit $rc (at ${SECONDS}s)"; } | tee "$logs/$name.log" | sed -u "s/^/[$name] /"
}
containers() {
  stage "containers lane: pytest (container integration)"
  pytest tests -m "not vm" --ignore=tests/unit --durations=25 --basetemp=/tmp/mlops-tests/containers
}
vms() {
  local rc=0
  stage "vm lane: the VM images (Debian 12 and 13 at once)"
  # A VM image starts from its release's container image's root file system (built before).
  mlops-provision sandbox image --kind vm --release 12 >/dev/null &
  local release12=$!
  mlops-provision sandbox image --kind vm --release 13 >/dev/null || rc=1
  wait "$release12" || rc=1
  [ "$rc" = 0 ] || return 1
  stage "vm lane: pytest (test_vm)"
  pytest tests/integration/test_vm.py --durations=25 --basetemp=/tmp/mlops-tests/vm || rc=1
  stage "vm lane: molecule default"
  molecule test -s default || rc=1
  return "$rc"
}
unit() {  # lint, then the unit tests even when lint failed (both verdicts in one run)
  local rc=0
  stage "unit lane: lint"
  ruff check src tests benchmarks library lint playbooks/action_plugins playbooks/callback_plugins || rc=1
  yamllint -s . || rc=1
  ansible-lint --profile production --offline -q || rc=1
  stage "unit lane: pytest (unit tests)"
  pytest tests/unit --durations=10 --basetemp=/tmp/mlops-tests/unit || rc=1
  return "$rc"
}
# Lint and the unit tests need no test host: they run while the sandbox images are built
# (debootstrap mostly waits on the package mirror), not on the VM lane, which is the longest.
stage "lint and unit tests, beside the sandbox images"
lane unit unit &
stage "container images (built once, shared by the integration tests and Molecule)"
# Debian 12: the shared container sandbox (upgraded to 13 in place by test_upgrade_to_debian13)
# and test_vm's node1. Debian 13 (the default): test_sandbox's nodes, Molecule's fresh node and
# test_vm's node2. Both releases, fresh and upgraded, in every run.
# The two releases build at once (debootstrap mostly waits on the mirror; each release has its
# own directory in the image cache).
mlops-provision sandbox image --kind container --release 12 >/dev/null &
release12=$!
MLOPS_SANDBOX_IMAGE=$(mlops-provision sandbox image --kind container --release 13)
export MLOPS_SANDBOX_IMAGE
wait "$release12"
stage "pytest and molecule, two lanes"
lane containers containers &
lane vm vms &
wait
for name in unit containers vm; do
  echo "== lane $name: the end of its log ($logs/$name.log)"
  tail -n 30 "$logs/$name.log"
done
# Last, so that it is what a truncated CI log still shows: each lane's verdicts, what failed and
# why (pytest's short summary), the lane's exit.
for name in unit containers vm; do
  echo "== lane $name: verdicts"
  grep -a -E "^(FAILED|ERROR) |^=+ .*( passed| failed| error).* in [0-9.]+s|^== lane $name exit|Executed: Failed" \
    "$logs/$name.log" | cut -c1-400 || true
done
grep -q "^== lane unit exit 0 " "$logs/unit.log" && grep -q "^== lane containers exit 0 " "$logs/containers.log" \
  && grep -q "^== lane vm exit 0 " "$logs/vm.log"
