#!/usr/bin/env bash
# CPPN fitting speed (issue #13): sketches/cppn_fit.rhai — inputs x, y, r; 5 hidden tanh
# layers of 32; sigmoid RGB output; init_std 0.3 — fitted to the 64x64
# sketches/images/arcs64.png for 600 full-batch Adam steps at lr 0.005, by easel and by
# PyTorch, alternately in the same run, on the same number of threads.
#
#   EASEL_TORCH_PYTHON=/work/venv-torch/bin/python scripts/bench_fit.sh [RUNS]
#
# easel: the whole process `target/release/easel render sketches/cppn_fit.rhai` (start-up,
# fit, render at 512x512, PNG), so its fit time is at most that; a copy of the sketch
# with 1 step measures what the process spends besides fitting. PyTorch: the training
# loop's own time in-process (scripts/bench_fit_torch.py), no start-up or import.
# Threads: THREADS (default: all cores) for both — RAYON_NUM_THREADS for easel,
# torch.set_num_threads for PyTorch, with OMP_WAIT_POLICY=PASSIVE unless set (on a shared
# machine OpenMP's default spin-waiting made PyTorch's 2-thread fit ~9x slower here).
# Prints each run, then the best of each side.
# A single fit's PSNR moves by a few dB with the initial weights (and even with float
# rounding), so PSNR is also compared over the seeds in SEEDS (default 1-5; each side
# draws its own initial weights from N(0, 0.3²) per seed): mean and range.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
threads=${THREADS:-$(nproc)}
py=${EASEL_TORCH_PYTHON:-python3}
if ! "$py" -c 'import torch, numpy, PIL' 2>/dev/null; then
    echo "bench_fit.sh: $py cannot import torch, numpy and pillow. Make a venv outside the repo:" >&2
    echo "  python3 -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch numpy pillow" >&2
    echo "and run with EASEL_TORCH_PYTHON=/work/venv-torch/bin/python" >&2
    exit 1
fi
easel=target/release/easel
if [[ ! -x $easel ]]; then
    echo "bench_fit.sh: no $easel; run cargo build --release first" >&2
    exit 1
fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The same sketch with one step (the image by absolute path): start-up and render cost.
sed -e "s|\"images/arcs64.png\"|\"$PWD/sketches/images/arcs64.png\"|" -e 's/steps: 600/steps: 1/' \
    sketches/cppn_fit.rhai >"$work/one_step.rhai"

now() { date +%s.%N; }
easel_run() { # sketch → "seconds psnr"
    local t0 t1
    t0=$(now)
    RAYON_NUM_THREADS=$threads "$easel" render "$1" -o "$work/out.png" 2>"$work/err"
    t1=$(now)
    local psnr
    psnr=$(grep -o 'PSNR [0-9.]*' "$work/err" | tail -1 | cut -d' ' -f2)
    echo "$(echo "$t1 - $t0" | bc -l) ${psnr:-?}"
}

echo "threads: $threads (easel: RAYON_NUM_THREADS=$threads; PyTorch: torch.set_num_threads($threads), OMP_WAIT_POLICY=$OMP_WAIT_POLICY)"
best_e=999 best_t=999 best_o=999 psnr_e=? psnr_t=?
for run in $(seq "$runs"); do
    read -r te pe < <(easel_run sketches/cppn_fit.rhai)
    read -r to _ < <(easel_run "$work/one_step.rhai")
    line=$("$py" scripts/bench_fit_torch.py --threads "$threads" | grep '^RESULT')
    tt=$(sed 's/.*torch_s=\([0-9.]*\).*/\1/' <<<"$line")
    pt=$(sed 's/.*torch_psnr=\([0-9.]*\).*/\1/' <<<"$line")
    printf 'run %d: easel process %.2f s (PSNR %s dB; 1-step process %.2f s)   PyTorch fit %.2f s (PSNR %.2f dB)\n' \
        "$run" "$te" "$pe" "$to" "$tt" "$pt"
    if (($(echo "$te < $best_e" | bc -l))); then best_e=$te psnr_e=$pe; fi
    if (($(echo "$to < $best_o" | bc -l))); then best_o=$to; fi
    if (($(echo "$tt < $best_t" | bc -l))); then best_t=$tt psnr_t=$pt; fi
done
echo "best of $runs, $threads threads:"
printf '  easel   whole process %.2f s (1-step process %.2f s, so the fit ≈ %.2f s), PSNR %s dB\n' \
    "$best_e" "$best_o" "$(echo "$best_e - $best_o" | bc -l)" "$psnr_e"
printf '  PyTorch fit loop      %.2f s, PSNR %s dB\n' "$best_t" "$psnr_t"
printf '  ratio easel process / PyTorch fit: %.2f; easel fit estimate / PyTorch fit: %.2f\n' \
    "$(echo "$best_e / $best_t" | bc -l)" "$(echo "($best_e - $best_o) / $best_t" | bc -l)"

seeds=${SEEDS:-1 2 3 4 5}
echo "PSNR over seeds $seeds ($threads threads):"
pe_all=() pt_all=()
for s in $seeds; do
    RAYON_NUM_THREADS=$threads "$easel" render sketches/cppn_fit.rhai --seed "$s" -o "$work/out.png" 2>"$work/err"
    pe=$(grep -o 'PSNR [0-9.]*' "$work/err" | tail -1 | cut -d' ' -f2)
    pt=$("$py" scripts/bench_fit_torch.py --threads "$threads" --seed "$s" | grep '^RESULT' |
        sed 's/.*torch_psnr=\([0-9.]*\).*/\1/')
    printf '  seed %s: easel %s dB, PyTorch %.2f dB\n' "$s" "$pe" "$pt"
    pe_all+=("$pe") pt_all+=("$pt")
done
stats() { printf '%s\n' "$@" | awk '{s += $1; if (NR == 1 || $1 < lo) lo = $1; if (NR == 1 || $1 > hi) hi = $1}
    END {printf "mean %.2f dB (%.2f-%.2f)", s / NR, lo, hi}'; }
echo "  easel   $(stats "${pe_all[@]}")"
echo "  PyTorch $(stats "${pt_all[@]}")"
