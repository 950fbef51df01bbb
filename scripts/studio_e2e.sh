#!/usr/bin/env bash
# Drives the real studio in tmux, the way a person uses it: start it on a fresh folder,
# edit a sketch in place and by rename (as vim and sed -i do), see the preview change and
# the reload time, break the sketch and see its error with the line, fix it, save a
# favourite and find the file; on a sketch with knobs, step the seed, turn a knob, save a
# favourite that `easel render --from` makes again byte for byte, write the knob into the
# file; breed variations, pick one and undo; start a tiny training, see the step counter move, stop it.
#
#   scripts/studio_e2e.sh [path/to/easel]      (default: target/debug/easel)
#
# Run by `cargo test` (tests/studio_e2e.rs) when tmux is installed. Exits non-zero with
# the last screen on the first expectation that does not come true within its timeout.
set -euo pipefail

EASEL=$(realpath "${1:-target/debug/easel}")
WORK=$(mktemp -d)
SESSION="easel-e2e-$$"
export LANG=C.UTF-8
cleanup() {
    tmux kill-session -t "$SESSION" 2>/dev/null || true
    # Stop any training this script started (it runs in a session of its own).
    for s in "$WORK"/runs/*/status.json; do
        [ -f "$s" ] || continue
        pid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$s")
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

screen() { tmux capture-pane -p -t "$SESSION"; }

# expect TEXT [SECONDS]: waits until TEXT is on screen.
expect() {
    local text=$1 limit=${2:-20}
    local deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        if screen | grep -qF -- "$text"; then
            echo "ok: saw \"$text\""
            return 0
        fi
        sleep 0.2
    done
    echo "FAILED: \"$text\" did not appear within ${limit}s. The screen:" >&2
    screen >&2
    exit 1
}

# expect_count TEXT N [SECONDS]: waits until TEXT is on screen at least N times.
expect_count() {
    local text=$1 n=$2 limit=${3:-20}
    local deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        if (($(screen | grep -oF -- "$text" | wc -l) >= n)); then
            echo "ok: saw \"$text\" ${n}x"
            return 0
        fi
        sleep 0.2
    done
    echo "FAILED: \"$text\" not seen ${n} times within ${limit}s. The screen:" >&2
    screen >&2
    exit 1
}

# expect_gone TEXT [SECONDS]: waits until TEXT is no longer on screen.
expect_gone() {
    local text=$1 limit=${2:-20}
    local deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        if ! screen | grep -qF -- "$text"; then
            echo "ok: \"$text\" gone"
            return 0
        fi
        sleep 0.2
    done
    echo "FAILED: \"$text\" still on screen after ${limit}s. The screen:" >&2
    screen >&2
    exit 1
}

mkdir -p "$WORK/sketches"
cat >"$WORK/sketches/a.rhai" <<'EOF'
#{
    kind: "truchet",
    size: 256,
    family: "triangles",
    tile: 32,
    foreground: "#1d3557",
    background: "#f1faee",
    seed: 1,
}
EOF
cat >"$WORK/sketches/data.rhai" <<'EOF'
#{ kind: "truchet", family: "triangles", size: 28, tile: 7, channels: 1,
   foreground: "black", background: "white", antialias: false, seed: 0 }
EOF
cat >"$WORK/sketches/g.rhai" <<'EOF'
#{
    kind: "gan", model: "dcgan", image_size: 28, channels: 1, latent: 8,
    g_widths: [16, 8], d_widths: [8, 16], kernel: 4, batch: 8, lr: 2e-3,
    steps: 50000, sample_every: 20, checkpoint_every: 20, seed: 5,
    data: #{ from: "data.rhai", count: 64 },
}
EOF

tmux new-session -d -s "$SESSION" -x 120 -y 36 -c "$WORK" "$EASEL studio sketches; sleep 30"

expect "Preview · a · seed 1 · 256x256 · render"
before=$(tmux capture-pane -p -e -t "$SESSION")

# An in-place save: the preview changes and shows save → screen.
sed -i 's/seed: 1,/seed: 2,/' "$WORK/sketches/a.rhai"
expect "save→screen"
echo "   $(screen | grep -oE 'save→screen [0-9]+ ms' | head -1)"
expect "reloaded a"
after=$(tmux capture-pane -p -e -t "$SESSION")
if [ "$before" = "$after" ]; then
    echo "FAILED: the preview did not change after the save" >&2
    exit 1
fi
echo "ok: the preview changed"

# A rename-style save (vim, sed -i): a new file moved over the old one.
sed 's/seed: 2,/seed: 3,/' "$WORK/sketches/a.rhai" >"$WORK/sketches/.a.rhai.tmp"
mv "$WORK/sketches/.a.rhai.tmp" "$WORK/sketches/a.rhai"
expect_count "reloaded a" 2

# Break it: the error names the file, line and column; the last good image stays.
sed -i 's/family: "triangles"/family: "triangle"/' "$WORK/sketches/a.rhai"
expect "a.rhai:4:"
expect "error (last good image kept)"
# Fix it.
sed -i 's/family: "triangle"/family: "arcs"/' "$WORK/sketches/a.rhai"
expect "a: fixed"

# A favourite, with its recipe.
tmux send-keys -t "$SESSION" s
expect "saved favourite"
ls "$WORK"/favourites/a-*.png >/dev/null
echo "ok: $(ls "$WORK"/favourites/) written"

# Seeds and knobs: a sketch with knobs appears; select it, next seed, turn a knob, save a
# favourite, and `easel render --from` makes the same bytes; w writes the knob back.
cat >"$WORK/sketches/b.rhai" <<'EOF'
// knobs for the e2e script
#{
    kind: "truchet",
    family: "arcs",
    size: 128,
    params: #{
        tile: [8, 64, 32],   // tile side
        line: [1, 8, 3],
    },
    tile: params.tile,
    line: params.line,
    seed: 3,
}
EOF
# Writing it is a save: the studio selects it.
expect "reloaded b"
expect "Preview · b · seed 3 · 128x128"
expect "Knobs"
tmux send-keys -t "$SESSION" n
expect "Preview · b · seed 4 · 128x128"
tmux send-keys -t "$SESSION" =
expect "tile     33"
# The panel moves at once; give the render of the turned knob a moment (128 px: ms).
sleep 0.5
tmux send-keys -t "$SESSION" s
expect_count "saved favourite" 2
fav=$(ls -t "$WORK"/favourites/b-*.png | head -1)
"$EASEL" render --from "$fav" -o "$WORK/again.png" 2>"$WORK/again.log"
if ! grep -qF "seed 4" "$WORK/again.log"; then
    echo "FAILED: the favourite's seed is not 4" >&2
    cat "$WORK/again.log" >&2
    exit 1
fi
if ! cmp "$fav" "$WORK/again.png"; then
    echo "FAILED: render --from did not make the same bytes" >&2
    exit 1
fi
echo "ok: render --from $(basename "$fav") made the same bytes"
# The favourite is the seed and knob on screen: the command line makes the same file.
"$EASEL" render "$WORK/sketches/b.rhai" --seed 4 --set tile=33 -o "$WORK/set.png" 2>/dev/null
if ! cmp "$fav" "$WORK/set.png"; then
    echo "FAILED: the favourite is not seed 4 with tile 33" >&2
    exit 1
fi
echo "ok: the favourite is render --seed 4 --set tile=33"
tmux send-keys -t "$SESSION" w
expect "as defaults"
if ! grep -qF "        tile: [8, 64, 33],   // tile side" "$WORK/sketches/b.rhai"; then
    echo "FAILED: w did not write tile 33 in place" >&2
    cat "$WORK/sketches/b.rhai" >&2
    exit 1
fi
echo "ok: w wrote the knob into the file, comment kept"
# The write is a save: wait for its reload (it selects b) before moving on. (The title
# had no save→screen since the knob's render.)
expect "save→screen"

# Variations: v breeds nine seeds of b, 3 picks the third (it becomes the preview), and
# backspace undoes the pick.
title_before=$(screen | grep -oE "Preview · b · seed [0-9]+" | head -1)
tmux send-keys -t "$SESSION" v
expect "Variations · b · seeds"
expect " 9 seed "
expect_gone "breeding…" 30
pick=$(screen | grep -oE " 3 seed [0-9]+" | head -1 | grep -oE "[0-9]+$")
echo "ok: nine variations; cell 3 is seed $pick"
tmux send-keys -t "$SESSION" 3
expect "Preview · b · seed $pick ·"
tmux send-keys -t "$SESSION" BSpace
expect "$title_before ·"

# Train the tiny GAN: select it, t, and watch the step counter move.
tmux send-keys -t "$SESSION" G
# The GAN sketch has loaded (not just been selected) once its hint shows.
expect "Press t to train it"
tmux send-keys -t "$SESSION" t
expect "training →"
expect "running" 60
deadline=$((SECONDS + 60))
until screen | grep -qE "running [1-9][0-9]*/50000"; do
    if ((SECONDS > deadline)); then
        echo "FAILED: the step counter did not move" >&2
        screen >&2
        exit 1
    fi
    sleep 0.3
done
first=$(screen | grep -oE "running [0-9]+/50000" | head -1)
sleep 3
second=$(screen | grep -oE "running [0-9]+/50000" | head -1)
if [ "$first" = "$second" ]; then
    echo "FAILED: the step counter stayed at $first" >&2
    exit 1
fi
echo "ok: step counter moved ($first → $second)"
expect "samples · step" 30

# Stop it through control.json, then quit: the terminal comes back.
tmux send-keys -t "$SESSION" x
expect "stopped" 30
tmux send-keys -t "$SESSION" q
sleep 1
if screen | grep -qF "Sketches ·"; then
    echo "FAILED: the studio did not quit" >&2
    screen >&2
    exit 1
fi
echo "ok: quit"

# The same run from `easel watch`, after it ended.
run=$(ls -d "$WORK"/runs/g-* | head -1)
tmux kill-session -t "$SESSION" 2>/dev/null || true
tmux new-session -d -s "$SESSION" -x 100 -y 30 -c "$WORK" "$EASEL watch $run; sleep 30"
expect "Watching"
expect "stopped"
expect "samples · step"
expect "Losses · D, G"
tmux send-keys -t "$SESSION" q
echo "studio e2e: all good"
