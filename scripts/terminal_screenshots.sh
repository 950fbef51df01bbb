#!/usr/bin/env bash
# Screenshots of the studio with `--graphics auto` in real terminals on a virtual X
# display, to see with one's own eyes that the picture is drawn (and not a wall of
# placeholder glyphs, issue #14): xterm as a VT340 (sixel), and kitty if installed.
#
#   scripts/terminal_screenshots.sh OUT_DIR [path/to/easel] [SKETCH]
#
# SKETCH (e.g. truchet_maze) is the sketch the studio opens on.
#
# Needs Xvfb, xterm and ImageMagick's `import` (Debian: apt-get install
# --no-install-recommends xvfb xterm x11-apps imagemagick; kitty for the kitty shot).
# Writes OUT_DIR/xterm-vt340.png and OUT_DIR/kitty.png. The studio's log (bottom of the
# screen) says which protocol it chose and why.
set -euo pipefail

OUT=${1:?usage: $0 OUT_DIR [path/to/easel] [SKETCH]}
EASEL=${2:-}
SKETCH=${3:-}
if [ -z "$EASEL" ]; then
    EASEL=target/release/easel
    [ -x "$EASEL" ] || EASEL=target/debug/easel
fi
EASEL=$(realpath "$EASEL")
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
for tool in Xvfb xterm import; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done

WORK=$(mktemp -d)
# A copy of the sketches, so the studio's state and favourites stay out of the repo.
cp -r "$REPO/sketches" "$WORK/sketches"
if [ -n "$SKETCH" ]; then
    # The studio opens on the sketch viewed last in a folder.
    mkdir -p "$WORK/state/easel"
    printf '{"%s": "%s.rhai"}\n' "$(realpath "$WORK/sketches")" "$SKETCH" \
        >"$WORK/state/easel/studio.json"
fi
DISPLAY_NUMBER=:$((90 + RANDOM % 9))
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

Xvfb "$DISPLAY_NUMBER" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
PIDS+=($!)
export DISPLAY=$DISPLAY_NUMBER
for _ in $(seq 50); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done

# Outside tmux, with a clean environment: no KITTY_WINDOW_ID/TMUX of the caller's.
STUDIO="cd '$WORK' && exec env -u TMUX -u KITTY_WINDOW_ID -u TERM_PROGRAM \
XDG_STATE_HOME='$WORK/state' '$EASEL' studio sketches --graphics auto"

# shot NAME SECONDS COMMAND...: starts a terminal, waits, photographs the screen.
shot() {
    local name=$1 wait=$2
    shift 2
    "$@" &
    local pid=$!
    sleep "$wait"
    import -window root "$OUT/$name.png"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "wrote $OUT/$name.png"
}

shot xterm-vt340 8 xterm -ti vt340 -xrm 'XTerm*decTerminalID: vt340' \
    -xrm 'XTerm*numColorRegisters: 256' -xrm 'XTerm*sixelScrolling: true' \
    -geometry 120x40+0+0 -fa Monospace -fs 10 -e sh -c "$STUDIO"

if command -v kitty >/dev/null; then
    # kitty needs OpenGL 3.3: Mesa's software renderer provides it on Xvfb.
    shot kitty 12 env LIBGL_ALWAYS_SOFTWARE=1 kitty --config NONE \
        -o initial_window_width=1200 -o initial_window_height=760 \
        sh -c "$STUDIO"
else
    echo "kitty is not installed: no kitty screenshot" >&2
fi
