#!/usr/bin/env bash
# Packages the real-SLURM test (tests/test_slurm.py, marker `slurm`) needs: a single-node
# slurm-wlm 22.05 cluster with munge, started by hand by tests/slurm/cluster.sh (no systemd).
# Idempotent and quick when already installed; ~15-40 s on a fresh Debian 12 (apt-get update
# included). Exit status 0 = ready; non-zero = not installable here (the test then skips).
set -euo pipefail

need=()
for bin in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch /usr/bin/squeue /usr/sbin/munged; do
    [[ -x "$bin" ]] || need+=("$bin")
done
if ((${#need[@]} == 0)); then
    echo "slurm-setup: slurm and munge already installed"
    exit 0
fi
if [[ $EUID -ne 0 ]]; then
    echo "slurm-setup: missing ${need[*]} and not root: cannot apt-get install" >&2
    exit 1
fi
command -v apt-get >/dev/null || { echo "slurm-setup: no apt-get (not Debian/Ubuntu)" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
# The packages' postinst scripts try to start services; there is no systemd here, and we
# never want them started by the package manager anyway: policy-rc.d 101 = "don't start".
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap '[[ $created_policy == 1 ]] && rm -f "$policy"' EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
echo "slurm-setup: installed $(dpkg-query -W -f='${Package} ${Version}  ' slurmctld slurmd slurm-client munge)"
