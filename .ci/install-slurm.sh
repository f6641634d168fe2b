#!/usr/bin/env bash
# Install what tests/test_slurm.py needs for its local SLURM (scripts/local-slurm.sh):
# Debian's slurmctld, slurmd, slurm-client and munge, and the Python package submitit.
# Idempotent: installs only what is missing.  Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "install-slurm: not root and no sudo; the SLURM tests will skip" >&2; exit 1
    fi
fi

need=()
for exe in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
    command -v "${exe%%:*}" >/dev/null || need+=("${exe#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    # --no-install-recommends: slurm-wlm's recommends pull in dozens of plugin -dev packages.
    $SUDO apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge
fi

# The executor submits through submitit (the optional extra "slurm" of teravox).
python3 -c "import submitit" 2>/dev/null || python3 -m pip install -q "submitit>=1.5,<2"
echo "install-slurm: $(slurmctld -V), $(munged -V 2>&1 | head -1 | awk '{print $1}'), submitit $(python3 -c 'import submitit; print(submitit.__version__)')"
