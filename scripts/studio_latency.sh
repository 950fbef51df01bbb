#!/usr/bin/env bash
# Measures save → preview on screen in the real studio for every bundled Truchet and CPPN
# sketch: opens the studio in tmux on a copy of sketches/, re-saves each sketch (touch, as
# an editor's save does) a few times, and reads the "save→screen N ms" the preview's title
# shows (the time from the file's mtime to the redraw, debounce included).
#
#   cargo build --release && scripts/studio_latency.sh [target/release/easel] [repeats]
set -euo pipefail
EASEL=$(realpath "${1:-target/release/easel}")
REPEATS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
SESSION="easel-latency-$$"
export LANG=C.UTF-8
trap 'tmux kill-session -t "$SESSION" 2>/dev/null || true; rm -rf "$WORK"' EXIT
cp -r "$ROOT/sketches" "$WORK/sketches"
tmux new-session -d -s "$SESSION" -x 160 -y 48 -c "$WORK" "$EASEL studio sketches; sleep 5"
# Wait for the first sketch (cppn_fit trains for a few seconds on first use).
for _ in $(seq 300); do
    tmux capture-pane -p -t "$SESSION" | grep -qE "Preview · [a-z_]+ · [0-9]+x[0-9]+ · render" && break
    sleep 0.1
done
sketches=("$WORK"/sketches/truchet_*.rhai "$WORK"/sketches/cppn_*.rhai)
declare -A times
# Round-robin, so each save selects a sketch whose title shows no earlier measurement.
for _ in $(seq "$REPEATS"); do
    for f in "${sketches[@]}"; do
        name=$(basename "$f" .rhai)
        touch "$f"
        value="?"
        for _ in $(seq 100); do
            sleep 0.05
            line=$(tmux capture-pane -p -t "$SESSION" | grep -F "Preview · $name ·" || true)
            if v=$(grep -oE 'save→screen [0-9]+' <<<"$line" | grep -oE '[0-9]+'); then
                value=$v
                break
            fi
        done
        times[$name]="${times[$name]:-} $value"
    done
done
printf "%-24s %s\n" sketch "save→screen ms, each save"
for f in "${sketches[@]}"; do
    name=$(basename "$f" .rhai)
    printf "%-24s%s\n" "$name" "${times[$name]}"
done
