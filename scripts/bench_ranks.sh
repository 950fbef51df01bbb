#!/usr/bin/env bash
# Images/s of one `easel train` process (all cores) against N MPI ranks on this machine
# (the cores shared out: cores/N threads each), on the same sketch and steps, side by side.
# Needs a build with the mpi feature:  cargo build --release --features mpi
#   scripts/bench_ranks.sh [SKETCH] [STEPS] [RANKS]      (defaults: gan_dcgan64, 8, 2)
# Prints the mean images/s over the steps after the first (which warms caches up).
set -euo pipefail
cd "$(dirname "$0")/.."
sketch=${1:-sketches/gan_dcgan64.rhai}
steps=${2:-8}
ranks=${3:-2}
easel=${EASEL:-target/release/easel}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1

mean_rate() {
    # metrics.jsonl: mean of imgs_per_s from the second step on.
    python3 -c '
import json, sys
rates = [json.loads(l)["imgs_per_s"] for l in open(sys.argv[1])][1:]
print(f"{sum(rates) / len(rates):.1f}")' "$1/metrics.jsonl"
}

"$easel" train "$sketch" --run-dir "$scratch/one" --steps "$steps" >/dev/null 2>&1
one=$(mean_rate "$scratch/one")
mpirun -np "$ranks" --oversubscribe "$easel" train "$sketch" --run-dir "$scratch/many" \
    --steps "$steps" >/dev/null 2>&1
many=$(mean_rate "$scratch/many")
cores=$(nproc)
echo "$(basename "$sketch"), $steps steps, $cores cores:"
echo "  1 process x $cores threads: $one images/s"
echo "  $ranks ranks x $((cores / ranks > 0 ? cores / ranks : 1)) threads: $many images/s"
python3 -c "print(f'  ranks / one process: {float(\"$many\") / float(\"$one\"):.2f}x')"
