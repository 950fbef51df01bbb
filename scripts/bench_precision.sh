#!/usr/bin/env bash
# CPU training speed in fp32 and bf16: the 64x64 DCGAN (sketches/gan_dcgan64.rhai, the
# PyTorch tutorial's model) at batch 64 through `easel train --precision fp32|bf16`, next
# to the same model in PyTorch eager on the CPU, fp32 and under its bf16 autocast, with the
# same threads, in one run (easel's runs alternate with PyTorch's, best of REPEAT each).
# Run it on an idle machine.
#
#   scripts/bench_precision.sh [STEPS] [REPEAT]
#
# Needs a release build (cargo build --release) and a Python with torch (PYTHON, default
# python3; e.g. python3 -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-14}
repeat=${2:-2}
python=${PYTHON:-python3}
easel=target/release/easel
threads=$(nproc)
[ -x "$easel" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The bundled sketch at batch 64 (its data sketch beside it).
sed 's/batch: 128/batch: 64/' sketches/gan_dcgan64.rhai >"$work/dcgan64.rhai"
cp sketches/cppn_silk.rhai "$work/"
grep -q 'batch: 64' "$work/dcgan64.rhai" || { echo "gan_dcgan64.rhai has no 'batch: 128'" >&2; exit 1; }
# Images/s of one `easel train` run: the mean over steps 3.. (the first two warm up).
easel_run() {
    rm -rf "$work/run"
    "$easel" train "$work/dcgan64.rhai" --steps "$steps" --precision "$1" --run-dir "$work/run" \
        >/dev/null 2>&1 </dev/null
    "$python" - "$work/run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][2:]
print(f"{sum(r['imgs_per_s'] for r in rows) / len(rows):.1f}")
PY
}
torch_run() {
    "$python" scripts/bench_gpu_torch.py --device cpu --threads "$threads" --batch 64 \
        --steps "$((steps - 4))" --amp "$1" | sed -E 's/.* ([0-9.]+) images\/s/\1/'
}
declare -A best
for _ in $(seq "$repeat"); do
    for what in easel:fp32 easel:bf16 torch:off torch:bf16; do
        v=$("${what%%:*}_run" "${what#*:}")
        if [ -z "${best[$what]:-}" ] || awk -v a="$v" -v b="${best[$what]}" 'BEGIN { exit !(a > b) }'; then
            best[$what]=$v
        fi
    done
done
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "DCGAN 64x64, batch 64, $threads threads, best of $repeat ($cpu), images/s:"
ref=${best[torch:off]}
for what in easel:fp32 easel:bf16 torch:off torch:bf16; do
    printf '  %-12s %7.1f  (%.2fx PyTorch fp32)\n' "$what" "${best[$what]}" \
        "$(awk -v a="${best[$what]}" -v b="$ref" 'BEGIN { print a / b }')"
done
