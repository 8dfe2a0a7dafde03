#!/usr/bin/env bash
# Packages the real-SLURM test (tests/test_slurm.py, marker `slurm`) needs: a single-node
# slurm-wlm 22.05 cluster with munge, started by hand by tests/slurm/cluster.sh (no systemd).
# Idempotent and quick when already installed; ~15-40 s on a fresh Debian 12 (apt-get update
# included). Never fails CI: when the packages can't be installed here (not root, no apt, no
# network) it says why and exits 0, and tests/test_slurm.py skips with that reason.
# `--strict` makes those cases exit 1 instead.
set -euo pipefail
strict=0
[[ "${1:-}" == "--strict" ]] && strict=1
cannot() {
    echo "slurm-setup: $* -- the SLURM tests will skip" >&2
    exit "$strict"
}

need=()
for bin in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch /usr/bin/squeue /usr/sbin/munged; do
    [[ -x "$bin" ]] || need+=("$bin")
done
if ((${#need[@]} == 0)); then
    echo "slurm-setup: slurm and munge already installed"
    exit 0
fi
[[ $EUID -eq 0 ]] || cannot "missing ${need[*]} and not root: cannot apt-get install"
command -v apt-get >/dev/null || cannot "no apt-get (not Debian/Ubuntu)"

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

apt-get update -qq || cannot "apt-get update failed"
apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null ||
    cannot "apt-get install slurmctld slurmd slurm-client munge failed"
echo "slurm-setup: installed $(dpkg-query -W -f='${Package} ${Version}  ' slurmctld slurmd slurm-client munge)"
