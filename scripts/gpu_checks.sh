#!/usr/bin/env bash
# Every GPU check in one pass, for a machine with an NVIDIA GPU: the CUDA tests
# (tests/gpu.rs: a CUDA step against the CPU, checkpoints across devices, bf16, the DCGAN's
# convolutions timed both ways, upscaling against the CPU), then `easel train` in fp32 and
# bf16 next to PyTorch (scripts/bench_gpu.sh), the same with EASEL_GPU_CONV=ops, and
# ESRGAN upscaling on CUDA in fp32 and bf16 next to PyTorch CUDA, fp32 and autocast.
#
#   scripts/gpu_checks.sh
#
# EASEL: the CUDA build of easel (default target/release/easel, from scripts/build_cuda.sh;
# use --cuda with the release the driver takes). GPU_TESTS: a compiled tests/gpu.rs (from
# `cargo test --release --features cuda --test gpu --no-run`), for a machine without cargo;
# by default cargo builds and runs it. PYTHON: a Python with torch (CUDA), numpy, pillow.
set -uo pipefail
cd "$(dirname "$0")/.."
easel=${EASEL:-target/release/easel}
python=${PYTHON:-python3}
t0=$(date +%s)
stamp() { echo "== [$(($(date +%s) - t0)) s] $*"; }
stamp "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
nvidia-smi | grep -m1 "CUDA Version"
# cuBLAS, cuRAND, the runtime and NVRTC: where the loader does not find them, from the
# NVIDIA wheels of a Python installation (PyTorch's).
if ldd "$easel" | grep -q "not found"; then
    for so in libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcudart.so.13 libnvrtc.so.13; do
        f=$(find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o -name "$so" -print 2>/dev/null | head -1)
        [ -n "$f" ] && export LD_LIBRARY_PATH=$(dirname "$f")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    done
    ldd "$easel" | grep "not found" && { echo "CUDA libraries missing" >&2; exit 1; }
fi

stamp "CUDA tests"
if [ -n "${GPU_TESTS:-}" ]; then
    timeout 300 "$GPU_TESTS" --ignored --test-threads 1 --nocapture
else
    timeout 1200 cargo test --release --features cuda --test gpu -- --ignored --test-threads 1 --nocapture
fi

stamp "easel train fp32 / bf16 against PyTorch fp32 / autocast"
EASEL=$easel PYTHON=$python timeout 300 scripts/bench_gpu.sh 100
stamp "the same with EASEL_GPU_CONV=ops (convolutions of cuBLAS products)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for p in fp32 bf16; do
    EASEL_GPU_CONV=ops timeout 120 "$easel" train sketches/gan_dcgan64.rhai --device cuda \
        --steps 100 --precision "$p" --run-dir "$work/ops-$p" >/dev/null 2>&1 </dev/null
    "$python" - "$work/ops-$p/metrics.jsonl" "$p" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][10:]
mean = sum(r['imgs_per_s'] for r in rows) / len(rows)
print(f"easel ops {sys.argv[2]}: {128000 / mean:.1f} ms/step, {mean:.0f} images/s")
PY
done

stamp "ESRGAN realesrgan-x4plus-anime on CUDA: easel fp32 / bf16, PyTorch fp32 / autocast"
"$python" - "$work" <<'PY'
import sys
import numpy as np
from PIL import Image
for size in (128, 256):
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([np.sin(7 * x + 3 * y), np.cos(5 * y - 2 * x), np.sin(9 * x * y)], -1) * 0.5 + 0.5
    Image.fromarray((img * 255).astype(np.uint8)).save(f"{sys.argv[1]}/in{size}.png")
PY
for size in 128 256; do
    for p in fp32 bf16; do
        for _ in 1 2; do
            s=$(date +%s.%N)
            timeout 120 "$easel" upscale "$work/in$size.png" -o "$work/out-$p.png" \
                --model realesrgan-x4plus-anime --tile 0 --device cuda --precision "$p" 2>/dev/null
            echo "easel $p ${size}²: $(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { print b - a }') s (whole process)"
        done
    done
    for amp in "" --amp; do
        echo "pytorch ${amp:-fp32} ${size}²: $(timeout 120 "$python" scripts/esrgan_reference.py bench \
            --param models/esrgan/realesrgan-x4plus-anime.param --size "$size" --device cuda --repeat 3 $amp) s (forward)"
    done
done
stamp done
