#!/usr/bin/env bash
# Makes every picture the README and docs/ show, into docs/images/, from the bundled
# sketches and the shipped models, with the easel binary. Each picture is made by the
# command its caption names, run in a temporary folder (a copy of sketches/, models/
# linked), so nothing else in the repository changes.
#
#   cargo build --release && scripts/gallery.sh [OUT_DIR]
#
# OUT_DIR defaults to docs/images. EASEL names the binary (default target/release/easel).
# Needs ImageMagick's `convert` (the ESRGAN before/after and the studio shot's crop), and
# for the studio shot what scripts/terminal_screenshots.sh needs: Xvfb, xterm and `import`
# (Debian: apt-get install --no-install-recommends xvfb xterm x11-apps imagemagick).
# Without Xvfb or xterm the studio shot is skipped with a message and the rest is made.
# Takes under a minute on 2 cores.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
EASEL=${EASEL:-target/release/easel}
[ -x "$EASEL" ] || EASEL="$REPO/$EASEL"
[ -x "$EASEL" ] || { echo "no easel binary at ${EASEL}: cargo build --release, or set EASEL" >&2; exit 1; }
EASEL=$(realpath "$EASEL")
OUT=${1:-$REPO/docs/images}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
command -v convert >/dev/null || { echo "ImageMagick's convert is not installed" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r "$REPO/sketches" "$WORK/sketches"
ln -s "$REPO/models" "$WORK/models"
cd "$WORK"
# Keep the studio's remembered state out of the user's home.
export XDG_STATE_HOME="$WORK/state"
easel() { "$EASEL" "$@"; }

echo "== Truchet, CPPN, sweep, latent walk"
easel render sketches/truchet_multiscale.rhai -o truchet.png --size 768
easel render sketches/cppn_silk.rhai -o cppn.png --size 512
easel sweep sketches/cppn_silk.rhai --vary depth=2..6 --vary width=8,16,32 --cell 128 -o sweep.png
easel animate sketches/cppn_silk.rhai -o latent-walk.gif --frames 48 --fps 16 --size 192

echo "== GAN samples"
easel sample models/truchet32 -o samples.png -n 36 --threshold 0.5 --seed 1
# 32x32 samples: shown 3x larger, pixel by pixel.
convert samples.png -filter point -resize 300% -strip gan-samples.png

echo "== ESRGAN before/after"
easel sample models/cdcgan32 -o tiles.png -n 9 --seed 1
easel upscale tiles.png -o tiles-4x.png
# The original enlarged pixel by pixel to the upscaled size, beside the upscaled one.
size=$(convert tiles-4x.png -format '%wx%h' info:)
convert tiles.png -filter point -resize "$size!" tiles-nearest.png
convert tiles-nearest.png \( -size 16x1 xc:white \) tiles-4x.png \
    -background white -gravity center +append -strip esrgan.png

cp truchet.png cppn.png sweep.png latent-walk.gif gan-samples.png esrgan.png "$OUT/"

echo "== The studio in xterm"
if command -v Xvfb >/dev/null && command -v xterm >/dev/null && command -v import >/dev/null; then
    # The studio opens on truchet_knobs: its preview, its knobs panel and the log.
    "$REPO/scripts/terminal_screenshots.sh" "$WORK/shots" "$EASEL" truchet_knobs
    # The screenshot is the whole virtual screen; keep the xterm window (top left).
    convert "$WORK/shots/xterm-vt340.png" -bordercolor black -border 1 -trim +repage \
        -strip "$OUT/studio.png"
else
    echo "Xvfb, xterm or import is missing: no studio shot (docs/images/studio.png kept)" >&2
fi

echo "== Sizes"
status=0
for f in truchet.png cppn.png sweep.png gan-samples.png esrgan.png studio.png latent-walk.gif; do
    [ -f "$OUT/$f" ] || continue
    bytes=$(stat -c %s "$OUT/$f")
    limit=1048576
    [ "${f##*.}" = gif ] && limit=1572864
    dims=$(convert "$OUT/$f[0]" -format '%wx%h' info:)
    printf '%-16s %8d bytes  %s\n' "$f" "$bytes" "$dims"
    if [ "$bytes" -gt "$limit" ]; then
        echo "  $f is larger than $limit bytes" >&2
        status=1
    fi
done
exit $status
