#!/usr/bin/env bash
# DCGAN 64x64 (the PyTorch tutorial model), batch 64, on CUDA: images/s of
# `easel train --device cuda` next to the same model in PyTorch CUDA, in the same run.
# Needs a GPU machine, a CUDA build (scripts/build_cuda.sh) and, for the reference,
# `pip install torch` (a CUDA wheel).
#
#   scripts/bench_gpu.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-200}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== easel (target/release/easel, --device cuda), $steps steps"
target/release/easel train sketches/gan_dcgan64.rhai --device cuda --steps "$steps" \
    --run-dir "$work/run" 2>&1 | tail -2
python3 - "$work/run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][10:]  # skip warm-up
print(f"easel: {sum(r['imgs_per_s'] for r in rows) / len(rows):.0f} images/s (mean of {len(rows)} steps)")
PY
echo "== PyTorch reference"
python3 scripts/bench_gpu_torch.py --steps "$steps"
