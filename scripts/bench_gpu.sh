#!/usr/bin/env bash
# DCGAN 64x64 (the PyTorch tutorial model; sketches/gan_dcgan64.rhai), batch 128, on CUDA: images/s of
# `easel train --device cuda` in fp32 and in bf16 (`--precision bf16`) next to the same
# model in PyTorch CUDA in fp32 and under its bf16 autocast, in the same run.
# Needs a GPU machine, a CUDA build (scripts/build_cuda.sh; EASEL names another binary)
# and, for the reference, a Python with torch (a CUDA wheel; PYTHON, default python3).
#
#   scripts/bench_gpu.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-200}
easel=${EASEL:-target/release/easel}
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for precision in fp32 bf16; do
    if ! "$easel" train sketches/gan_dcgan64.rhai --device cuda --steps "$steps" \
        --precision "$precision" --run-dir "$work/$precision" >"$work/$precision.log" 2>&1 </dev/null; then
        echo "easel $precision failed:"; tail -5 "$work/$precision.log"; continue
    fi
    "$python" - "$work/$precision/metrics.jsonl" "$precision" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][10:]  # skip warm-up
mean = sum(r['imgs_per_s'] for r in rows) / len(rows)
print(f"easel {sys.argv[2]}: {128000 / mean:.1f} ms/step, {mean:.0f} images/s (mean of steps 11-{len(rows) + 10})")
PY
done
for amp in off bf16; do
    "$python" scripts/bench_gpu_torch.py --steps "$steps" --batch 128 --amp "$amp" || echo "PyTorch ($amp) failed"
done
