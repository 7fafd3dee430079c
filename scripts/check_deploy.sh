#!/usr/bin/env bash
# Checks the deploy/ recipes without a cluster: the Kubernetes Job against the API schema
# (kubernetes-validate, strict: unknown fields fail) and the Slurm script's syntax. The Slurm
# recipe runs for real in scripts/slurm_e2e.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${FROSTLINE_CHECK_VENV:-$HOME/.cache/frostline/check-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import kubernetes_validate' 2>/dev/null \
  || "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate
"$venv/bin/kubernetes-validate" --strict -k 1.30.0 "$here/deploy/k8s/embed-job.yaml"
bash -n "$here/deploy/slurm/embed.sbatch"
echo "deploy recipes: ok"
