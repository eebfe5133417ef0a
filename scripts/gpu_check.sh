#!/usr/bin/env bash
# The GPU check of docs/PERFORMANCE.md, in three steps:
#   bash scripts/gpu_check.sh prepare      on a machine with pip: the wheels the GPU machine lacks, into .whl/
#   bash scripts/gpu_check.sh run [ARG..]  on the GPU machine: install .whl/*, then `bench gpu` into $OUT
#                                          (default results/gpu_check); ends within 8 minutes
#   bash scripts/gpu_check.sh smoke        anywhere: the same check on the CPU at the small size
# ARGs go to `mpdit-bench bench gpu` (e.g. --no-compile, --setting common_batch=64).
set -euo pipefail
cd "$(dirname "$0")/.."

# the GPU machine's image has torch, torchvision, numpy, scipy, typer, rich, pyyaml, tqdm, but not torch-fidelity
WHEELS=(torch-fidelity==0.4.0)
SITE=/tmp/mpdit-bench-site

case "${1:-}" in
    prepare)
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "${WHEELS[@]}"
        du -sh .whl
        ;;
    run)
        shift
        out=${OUT:-results/gpu_check}
        mkdir -p "$out"
        if compgen -G ".whl/*.whl" >/dev/null; then
            python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
                .whl/*.whl
            export PYTHONPATH=$SITE
        fi
        export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.draw,power.limit \
            --format=csv >"$out/nvidia_smi.csv" 2>&1 || true
        # the check stops itself at --budget-s (420 s after its start); the timeout is the backstop
        timeout -k 15 460 python3 -m mpdit_bench bench gpu --out-dir "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
        ;;
    smoke)
        shift
        PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} python3 -m mpdit_bench bench gpu --device cpu --small --threads 1 \
            --out-dir "${OUT:-results/gpu_check_cpu}" "$@"
        ;;
    *)
        echo "usage: bash scripts/gpu_check.sh prepare | run [ARGS] | smoke [ARGS]" >&2
        exit 2
        ;;
esac
