#!/usr/bin/env bash
# The whole `easel render` process for the 1024x1024 CPPN of benches/cppn.rs (inputs x, y,
# r + 8-dim z, 7 hidden layers of 32 tanh, sigmoid) — start, parse, render, PNG — next to
# PyTorch evaluating the same network shape in process (scripts/bench_render_torch.py), in
# the same run, both on 2 threads. Best of 5 for easel, 3 for PyTorch.
#
#   PYTHON=/work/venv-torch/bin/python scripts/bench_render.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/bench.rhai" <<'RHAI'
#{ kind: "cppn", size: 1024, inputs: ["x", "y", "r"], z: 8, depth: 7, width: 32,
   activation: "tanh", seed: 1 }
RHAI
[ -x target/release/easel ] || cargo build --release
best=999
for _ in 1 2 3 4 5; do
    start=$(date +%s.%N)
    RAYON_NUM_THREADS=2 target/release/easel render "$work/bench.rhai" -o "$work/out.png" 2>/dev/null
    took=$(echo "$(date +%s.%N) - $start" | bc)
    best=$(echo "if ($took < $best) $took else $best" | bc)
done
printf "easel: whole process %.3f s (best of 5)\n" "$best"
"$python" scripts/bench_render_torch.py --threads 2 --out "$work/torch.png"
