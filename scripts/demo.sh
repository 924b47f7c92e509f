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
# Where to look: the monitoring page (published on this machine's loopback), its user and CA.
page=$(sed -n 's/^ *monitoring_page_url: *//p' "$inv" | head -n 1)
if [ -n "$page" ]; then
    echo "monitoring page: ${page} (user admin; trust .mlops-provision/sandbox/mlflow-ca.crt)"
    echo "  its password:  .venv/bin/ansible -i $inv node1 -m ansible.builtin.debug -a var=prometheus_web_password --vault-password-file .mlops-provision/sandbox/vault-password"
    echo "  energy:        $mp energy -i $inv --since 1h"
fi
