#!/usr/bin/env bash
# Peak anonymous memory of `easel train --steps 2` (with its SWD evaluation at step 2) on a
# folder of 20,000 pictures at 128x128 RGB: decoding into the u8 cache, training, the
# evaluation. Then the same run resumed, which maps the cache instead of decoding. The goal
# is at most 600 MB of RssAnon for 20,000 or 200,000 pictures (a loader that held a folder
# in memory as f32 once peaked at 11.2 GB).
#
#   scripts/bench_folder_rss.sh [count] [target/release/easel]
#
# Needs GNU time (`apt-get install time`). The pictures are drawn by easel itself
# (`easel dataset` of sketches/truchet_arcs.rhai, PNG).
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
"$EASEL" dataset sketches/truchet_arcs.rhai -n "$COUNT" --size 128 -o "$WORK/pictures" 2>/dev/null
echo "  $(($(date +%s) - start)) s, $(du -sh "$WORK/pictures" | cut -f1)"

# A small model, so the figure is mostly the data's; the same model on 64 sketch-rendered
# images gives the baseline without a folder.
model='kind: "gan", image_size: 128, channels: 3, g_base: 8, d_base: 8, batch: 16,
    steps: 2, sample_every: 1000, checkpoint_every: 1000'
echo "#{ $model, data: #{ folder: \"pictures\" } }" >"$WORK/folder128.rhai"
echo "#{ $model, data: #{ from: \"$ROOT/sketches/truchet_arcs.rhai\", count: 64 } }" \
    >"$WORK/baseline128.rhai"

# Runs `easel train` and samples its anonymous memory (RssAnon in /proc/PID/status: the
# heap, not the mapped cache or the binary) every 20 ms; prints the peak with the peak RSS
# GNU time saw.
measure() {
    local label=$1 sketch=$2 run=$3
    shift 3
    /usr/bin/time -v "$EASEL" train "$WORK/$sketch" --run-dir "$WORK/$run" "$@" \
        >"$WORK/out.txt" 2>&1 &
    local tpid=$! peak=0 a pid
    sleep 0.05
    pid=$(pgrep -P "$tpid" | head -1 || true)
    while kill -0 "$tpid" 2>/dev/null; do
        a=$(awk '/^RssAnon/ {print $2}' "/proc/${pid:-0}/status" 2>/dev/null || true)
        [ -n "$a" ] && [ "$a" -gt "$peak" ] && peak=$a
        sleep 0.02
    done
    wait "$tpid" || { cat "$WORK/out.txt"; exit 1; }
    local kb wall
    kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$WORK/out.txt")
    wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' "$WORK/out.txt")
    grep '^data:' "$WORK/out.txt" | cut -c1-160 || true
    echo "$label: peak RssAnon $((peak / 1024)) MB, peak RSS $((kb / 1024)) MB, wall $wall"
}
measure "baseline: the same model on 64 sketch images" baseline128.rhai base --steps 2
measure "train --steps 2 (decode, build the cache)" folder128.rhai run --steps 2
echo "  cache: $(du -h "$WORK/run/data.cache" | cut -f1)"
measure "train --resume --steps 4 (cache reused)" folder128.rhai run --steps 4 --resume
