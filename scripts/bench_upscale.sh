#!/usr/bin/env bash
# ESRGAN upscaling speed: the whole `easel upscale` process (fp32, and --precision bf16,
# with the largest pixel difference between the two) against PyTorch eager CPU
# running the same network (the project's reference, scripts/esrgan_reference.py, forward
# only, the same 10 px mirrored padding) on the same picture with the same threads, in one
# run, best of REPEAT each. Run it on an idle machine: another build or training running
# beside it makes both numbers meaningless.
#
#   scripts/bench_upscale.sh [MODEL] [SIZE] [REPEAT]
#       MODEL   a shipped model's name (default realesrgan-x4plus, which
#               scripts/fetch_realesrgan.sh fetches)
#       SIZE    side of the input picture (default 128)
#
# Needs a release build (cargo build --release) and a Python with torch, numpy and pillow
# (PYTHON, default python3; e.g. python3 -m venv /work/venv-torch &&
# /work/venv-torch/bin/pip install torch numpy pillow).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-realesrgan-x4plus}
size=${2:-128}
repeat=${3:-3}
python=${PYTHON:-python3}
easel=target/release/easel
threads=$(nproc)
param=models/esrgan/$model.param
[ -x "$easel" ] || { echo "build first: cargo build --release" >&2; exit 1; }
if [ ! -f "$param" ]; then
    if [ "$model" = realesrgan-x4plus ]; then
        scripts/fetch_realesrgan.sh
    else
        echo "$param does not exist" >&2
        exit 1
    fi
fi
"$python" -c "import torch, numpy, PIL" 2>/dev/null || {
    echo "$python lacks torch, numpy or pillow (set PYTHON)" >&2
    exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" - "$tmp/in.png" "$size" <<'PY'
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
size = int(sys.argv[2])
# A smooth picture with edges (what a GAN sample looks like), not noise.
y, x = np.mgrid[0:size, 0:size] / size
img = np.stack([np.sin(7 * x + 3 * y), np.cos(5 * y - 2 * x), np.sin(9 * x * y)], -1)
img = (img * 0.5 + 0.5 + rng.normal(0, 0.02, img.shape)).clip(0, 1)
Image.fromarray((img * 255).astype(np.uint8)).save(sys.argv[1])
PY
best() { sort -n | head -1; }
# easel in fp32 and in bf16, alternating, so both see the same machine.
fp32_times=()
bf16_times=()
for _ in $(seq "$repeat"); do
    for precision in fp32 bf16; do
        start=$(date +%s.%N)
        "$easel" upscale "$tmp/in.png" -o "$tmp/out-$precision.png" --model "$model" --tile 0 \
            --precision "$precision" 2>/dev/null
        took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
        if [ "$precision" = fp32 ]; then fp32_times+=("$took"); else bf16_times+=("$took"); fi
    done
done
easel_best=$(printf '%s\n' "${fp32_times[@]}" | best)
bf16_best=$(printf '%s\n' "${bf16_times[@]}" | best)
differ=$("$python" - "$tmp/out-fp32.png" "$tmp/out-bf16.png" <<'PY'
import sys
import numpy as np
from PIL import Image
a, b = (np.asarray(Image.open(p), dtype=np.int16) for p in sys.argv[1:3])
d = np.abs(a - b)
print(f"max {d.max()} levels, mean {d.mean():.2f}")
PY
)
torch_best=$("$python" scripts/esrgan_reference.py bench --param "$param" --size "$size" \
    --threads "$threads" --repeat "$repeat")
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
printf '%s on a %dx%d picture, %d threads, best of %d (%s)\n' \
    "$model" "$size" "$size" "$threads" "$repeat" "$cpu"
printf '  easel upscale (whole process)   %6.2f s\n' "$easel_best"
printf '  easel upscale --precision bf16  %6.2f s  (pixels against fp32: %s)\n' "$bf16_best" "$differ"
printf '  PyTorch eager CPU (forward)     %6.2f s\n' "$torch_best"
printf '  easel / PyTorch                 %6.2f\n' "$(awk -v a="$easel_best" -v b="$torch_best" 'BEGIN { print a / b }')"
printf '  easel bf16 / PyTorch            %6.2f\n' "$(awk -v a="$bf16_best" -v b="$torch_best" 'BEGIN { print a / b }')"
printf '  easel bf16 / easel fp32         %6.2f\n' "$(awk -v a="$bf16_best" -v b="$easel_best" 'BEGIN { print a / b }')"
