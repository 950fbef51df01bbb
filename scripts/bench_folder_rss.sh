#!/usr/bin/env bash
# Peak memory of `easel train --steps 2` on a folder of 20,000 pictures at 128x128
# (issue 9: the loader that held a folder in memory as f32 peaked at 11.2 GB here; the goal
# is under 1.5 GB). Then the same run resumed, which maps the cache instead of decoding.
#
#   scripts/bench_folder_rss.sh [count] [target/release/easel]
#
# Needs GNU time (`apt-get install time`). The pictures are drawn by easel itself
# (`easel dataset` of a CPPN sketch, PNG).
set -euo pipefail
COUNT=${1:-20000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if [ -n "${2:-}" ]; then
    EASEL=$(realpath "$2")
else
    cargo build --release --quiet
    EASEL=$ROOT/target/release/easel
fi
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "making $COUNT pictures at 128x128 in $WORK/pictures"
start=$(date +%s)
"$EASEL" dataset sketches/cppn_silk.rhai -n "$COUNT" --size 128 -o "$WORK/pictures" 2>/dev/null
echo "  $(($(date +%s) - start)) s, $(du -sh "$WORK/pictures" | cut -f1)"

# A small model, so the figure is mostly the data's; the same model on 64 sketch-rendered
# images gives the baseline without a folder.
model='kind: "gan", image_size: 128, channels: 3, g_base: 16, d_base: 16, batch: 32,
    steps: 2, sample_every: 1000, checkpoint_every: 1000'
echo "#{ $model, data: #{ folder: \"pictures\" } }" >"$WORK/folder128.rhai"
echo "#{ $model, data: #{ from: \"$ROOT/sketches/cppn_silk.rhai\", count: 64 } }" \
    >"$WORK/baseline128.rhai"

measure() {
    local label=$1 sketch=$2 run=$3
    shift 3
    /usr/bin/time -v "$EASEL" train "$WORK/$sketch" --run-dir "$WORK/$run" "$@" \
        >"$WORK/out.txt" 2>&1 || { cat "$WORK/out.txt"; exit 1; }
    local kb wall
    kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$WORK/out.txt")
    wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' "$WORK/out.txt")
    grep '^data:' "$WORK/out.txt" | cut -c1-160 || true
    echo "$label: peak RSS $((kb / 1024)) MB, wall $wall"
}
measure "baseline: the same model on 64 sketch images" baseline128.rhai base --steps 2
measure "train --steps 2 (decode, build the cache)" folder128.rhai run --steps 2
echo "  cache: $(du -h "$WORK/run/data.cache" | cut -f1)"
measure "train --resume --steps 4 (cache reused)" folder128.rhai run --steps 4 --resume
