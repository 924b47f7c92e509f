#!/usr/bin/env bash
# The main job on the local sandbox: 3 Debian 13 container nodes, converge them, prove the result
# (NODES, KIND=vm and RELEASE=12 change it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mp=.venv/bin/mlops-provision
inv=.mlops-provision/sandbox/inventory.yml
$mp sandbox up --nodes "${NODES:-3}" --kind "${KIND:-container}" --release "${RELEASE:-13}"
$mp up -i "$inv"
$mp verify -i "$inv"
