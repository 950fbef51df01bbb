#!/usr/bin/env bash
# A newcomer's first hour as a script: a fresh folder, `easel init`, `check` over every
# bundled sketch, every command of the README's five-minute tour exactly as written (read
# from README.md, `cargo run --release --` replaced by the binary), and the mistakes people
# make, each of which must say what to do. Stops at the first surprise, naming it.
#
#   scripts/newcomer.sh [path/to/easel]      (default target/release/easel)
#
# The tour's `train` lines run until their first step is logged, then get Ctrl-C (SIGINT),
# as the README tells people to do: they must exit 130 with a checkpoint. The `watch` line
# runs in tmux when tmux is installed (else it must say it needs a terminal).
# tests/newcomer.rs runs this in `cargo test`.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
EASEL=${1:-$REPO/target/release/easel}
EASEL=$(realpath "$EASEL")
[ -x "$EASEL" ] || { echo "newcomer: no easel binary at $EASEL" >&2; exit 1; }
WORK=$(mktemp -d)
SESSION="easel-newcomer-$$"
cleanup() {
    tmux kill-session -t "$SESSION" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
export XDG_STATE_HOME="$WORK/state"

fail() {
    echo "newcomer: FAILED: $*" >&2
    exit 1
}
easel() { "$EASEL" "$@"; }

# expect_error "what it must say" command...: the command fails (exit 1) and says it.
expect_error() {
    local want=$1 out code=0
    shift
    out=$("$@" 2>&1) || code=$?
    [ "$code" = 1 ] || fail "\`$*\` exited $code (expected 1): $out"
    grep -qF -- "$want" <<<"$out" || fail "\`$*\` did not say \"$want\": $out"
    echo "ok: \`$*\` says: $(grep -F -- "$want" <<<"$out" | head -1)"
}

echo "== easel init in a fresh folder"
easel init
[ -f sketches/truchet_arcs.rhai ] || fail "init wrote no sketches/truchet_arcs.rhai"
[ -d data/oxygen64 ] || fail "init wrote no data/oxygen64 (gan_icons.rhai trains on it)"

echo "== easel check over every bundled sketch"
easel check sketches/*.rhai || fail "check failed on a bundled sketch right after init"

echo "== the README's tour, as written"
# The tour runs in the clone's folder: the shipped models are there.
ln -s "$REPO/models" models
mapfile -t TOUR < <(awk '
    /^## A five-minute tour/ { inside = 1; next }
    inside && /^```/ { if (fenced) exit; fenced = 1; next }
    inside && fenced && NF { print }
' "$REPO/README.md")
[ "${#TOUR[@]}" -ge 10 ] || fail "found only ${#TOUR[@]} tour commands in README.md"
for line in "${TOUR[@]}"; do
    case "$line" in
        "cargo run --release -- "*) ;;
        *) fail "a tour line that is not \`cargo run --release -- …\`: $line" ;;
    esac
    # What a person runs: the binary, the line's arguments, its comment dropped.
    args=$(sed -e 's/^cargo run --release -- //' -e 's/[[:space:]]\{2,\}#.*$//' <<<"$line")
    echo "-- easel $args"
    case "$args" in
        train*)
            eval "exec \"$EASEL\" $args" >train.log 2>&1 &
            pid=$!
            # Until training starts ("training steps A..B"), and a moment of it.
            for _ in $(seq 600); do
                grep -q "^training steps" train.log 2>/dev/null && break
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
            done
            sleep 2
            kill -INT "$pid" 2>/dev/null || true
            code=0
            wait "$pid" || code=$?
            [ "$code" = 130 ] || fail "\`easel $args\` then Ctrl-C exited $code (expected 130): $(tail -5 train.log)"
            grep -q "interrupted, checkpointed" train.log || fail "no checkpoint after Ctrl-C: $(tail -5 train.log)"
            ;;
        watch*)
            if command -v tmux >/dev/null; then
                tmux new-session -d -s "$SESSION" -x 100 -y 30 \
                    "cd '$WORK' && XDG_STATE_HOME='$WORK/state' '$EASEL' $args; sleep 30"
                seen=""
                for _ in $(seq 120); do
                    sleep 0.25
                    seen=$(tmux capture-pane -p -t "$SESSION")
                    grep -q "stopped" <<<"$seen" && break
                done
                grep -q "stopped" <<<"$seen" || fail "watch did not show the stopped run:\n$seen"
                tmux send-keys -t "$SESSION" q
                tmux kill-session -t "$SESSION"
            else
                code=0
                out=$(eval "\"$EASEL\" $args" 2>&1) || code=$?
                grep -q "needs a terminal" <<<"$out" || fail "watch without a terminal: $out"
            fi
            ;;
        *)
            eval "\"$EASEL\" $args" >out.log 2>&1 || fail "\`easel $args\` failed: $(tail -5 out.log)"
            ;;
    esac
done
for made in arcs.png arcs-again.png big.png silk.gif sheet.png grid.png gan-arcs.png walk.gif tiles.png tiles-4x.png; do
    [ -s "$made" ] || fail "the tour should have written $made"
done
cmp -s arcs.png arcs-again.png || fail "render --from arcs.png did not give the same bytes"

if command -v tmux >/dev/null; then
    echo "== easel gallery on a terminal: a contact sheet, names under the pictures"
    tmux new-session -d -s "$SESSION" -x 120 -y 60 \
        "cd '$WORK' && '$EASEL' gallery; echo gallery-exit-\$?; sleep 30"
    seen=""
    for _ in $(seq 240); do
        sleep 0.5
        seen=$(tmux capture-pane -p -t "$SESSION" -S -400)
        grep -q "gallery-exit-" <<<"$seen" && break
    done
    grep -q "gallery-exit-0" <<<"$seen" || fail "gallery did not finish well:\n$seen"
    for name in "truchet_arcs" "cppn_silk" "gan_truchet · truchet32" "gan_can · untrained"; do
        grep -qE "(^| )$name( |\$)" <<<"$seen" || fail "the gallery has no \"$name\" label:\n$seen"
    done
    tmux kill-session -t "$SESSION"
fi

echo "== the mistakes people make"
expect_error "is neither a run directory" easel sample sketches -o s.png
expect_error "missing/ does not exist" easel watch missing/
expect_error "did you mean sketches/truchet_arcs.rhai?" easel render truchet_arcs.rhai
printf '#{ kind: "truchet", foregound: "#000" }\n' >typo.rhai
expect_error 'did you mean "foreground"?' easel render typo.rhai
expect_error "is a dcgan model" easel sample models/truchet32 --size 256
expect_error "expected one of arcs, maze, triangles" easel sample models/cdcgan32 --class arc
expect_error "\`easel sample --from grid.png\`" easel render --from grid.png

echo "newcomer: all good"
