#!/usr/bin/env bash
# Builds easel with CUDA (`--features cuda`) on a machine with no system CUDA toolkit and,
# possibly, no GPU: nvcc and the CUDA headers and libraries come from NVIDIA's wheels on
# the Python package registry, installed into a local folder; where no driver exists, a
# stub libcuda.so satisfies the linker (the real driver is loaded at run time on a GPU
# machine).
#
#   scripts/build_cuda.sh [--cap 90] [--cuda 13.4] [--cudnn] [--nccl] [--toolkit DIR]
#                         [-- extra cargo args]
#   eval "$(scripts/build_cuda.sh --print-env)"   # after a build: the same environment
#                                                 # in this shell (cargo clippy/test)
#
# --cap: CUDA compute capability of the target GPU (90 = H100/H200, 89 = L4/RTX 40xx,
# 86 = RTX 30xx, 80 = A100). The whole build took 8 minutes on 2 idle cores (2026-12-04).
# --cuda: the CUDA 13 release to build with (default 13.4). Candle's kernels are PTX that
# the driver compiles when they load, and a driver refuses PTX from a newer CUDA than its
# own (CUDA_ERROR_UNSUPPORTED_PTX_VERSION): give the release `nvidia-smi` names as "CUDA
# Version" on the GPU machine, e.g. `--cuda 13.0` for driver 580. Each release gets its
# own toolkit folder, target/cuda-toolkit-<release> (13.4's is target/cuda-toolkit).
# --nccl: also MPI ranks that sum gradients on the GPUs (features cuda, mpi, nccl; needs
# OpenMPI: scripts/mpi_setup.sh; NCCL itself comes as a wheel like the rest).
# The binary lands in target/release/easel (or $CARGO_TARGET_DIR/release/easel); run it
# with `--device cuda`.
set -euo pipefail
cd "$(dirname "$0")/.."

cap=${CUDA_COMPUTE_CAP:-90}
toolkit=
cuda=13.4
features=cuda
cargo_args=()
print_env=
nccl=
while [ $# -gt 0 ]; do
    case "$1" in
        --cap) cap=$2; shift 2 ;;
        --cuda) cuda=$2; shift 2 ;;
        --cudnn) features=cudnn; shift ;;
        --nccl) nccl=1; shift ;;
        --toolkit) toolkit=$2; shift 2 ;;
        --print-env) print_env=1; shift ;;
        --) shift; cargo_args=("$@"); break ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

# One CUDA 13 release throughout: nvcc, its front-end pieces and the runtime must agree.
case "$cuda" in
    13.4) CUDA_VERSION=13.4.92; default_toolkit=$PWD/target/cuda-toolkit; same= ;;
    13.[0-9]) CUDA_VERSION="$cuda.*"; default_toolkit=$PWD/target/cuda-toolkit-$cuda
              same="==$cuda.*" ;;
    *) echo "--cuda takes a CUDA 13 release such as 13.0 or 13.4, not '$cuda'" >&2; exit 2 ;;
esac
toolkit=${toolkit:-$default_toolkit}
wheels=(
    "nvidia-cuda-nvcc==$CUDA_VERSION" "nvidia-cuda-runtime==$CUDA_VERSION"
    "nvidia-nvvm==$CUDA_VERSION" "nvidia-cuda-crt==$CUDA_VERSION"
    "nvidia-cuda-nvrtc$same" "nvidia-cuda-cccl$same" nvidia-cublas nvidia-curand
)
[ "$features" = cudnn ] && wheels+=(nvidia-cudnn-cu13)
if [ -n "$nccl" ]; then
    features=$features,mpi,nccl
    wheels+=(nvidia-nccl-cu13)
fi

cu=$toolkit/nvidia/cu13
# Whether the NVIDIA driver (libcuda) is installed. ldconfig's whole output is read first:
# `ldconfig -p | grep -q` can fail under pipefail (SIGPIPE) and read as "no driver".
has_driver() {
    local cache
    cache=$(ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true)
    grep -q 'libcuda\.so\b' <<<"$cache"
}
# The toolkit's environment, as `export` lines, with `$1` first on the library paths:
# eval'd for the build below, printed by --print-env.
env_lines() {
    printf 'export PATH=%q:"$PATH"\n' "$cu/bin"
    printf 'export CUDA_HOME=%q CUDA_ROOT=%q CUDA_PATH=%q CUDA_TOOLKIT_ROOT_DIR=%q\n' "$cu" "$cu" "$cu" "$cu"
    printf 'export CUDA_COMPUTE_CAP=%q\n' "$cap"
    printf 'export LIBRARY_PATH=%q"${LIBRARY_PATH:+:$LIBRARY_PATH}"\n' "$1"
    printf 'export LD_LIBRARY_PATH=%q"${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"\n' "$1"
}
if [ -n "$print_env" ]; then
    [ -x "$cu/bin/nvcc" ] || { echo "no toolkit in $toolkit yet: run scripts/build_cuda.sh first" >&2; exit 1; }
    # The link stub only where no driver is: it must never shadow a real libcuda.
    libs=$cu/lib
    if ! has_driver && [ -e "$toolkit/stub/libcuda.so" ]; then
        libs=$toolkit/stub:$libs
    fi
    env_lines "$libs"
    exit 0
fi
if [ ! -x "$cu/bin/nvcc" ] || { [ -n "$nccl" ] && [ ! -d "$toolkit/nvidia/nccl" ]; }; then
    echo "installing the CUDA $CUDA_VERSION toolkit wheels into $toolkit"
    python3 -m pip install --quiet --upgrade --target "$toolkit" "${wheels[@]}"
fi
[ -x "$cu/bin/nvcc" ] || { echo "no nvcc in $cu/bin after the install" >&2; exit 1; }

# The wheels spread the toolkit over several folders; give it the layout build scripts
# expect: headers in include/ (cccl's too), libraries in lib/ and lib64/, unversioned .so.
for d in "$toolkit"/nvidia/*/; do
    [ "$d" = "$cu/" ] && continue
    [ -d "$d/include" ] && cp -rn "$d/include/." "$cu/include/" 2>/dev/null || true
    [ -d "$d/lib" ] && cp -rn "$d/lib/." "$cu/lib/" 2>/dev/null || true
done
[ -d "$cu/include/cccl" ] && cp -rn "$cu/include/cccl/." "$cu/include/" 2>/dev/null || true
mkdir -p "$cu/lib"
[ -e "$cu/lib64" ] || ln -s lib "$cu/lib64"
for so in "$cu"/lib/lib*.so.*; do
    base=${so%%.so.*}.so
    [ -e "$base" ] || ln -s "$(basename "$so")" "$base"
done

eval "$(env_lines "$cu/lib")"
nvcc --version | tail -1

# libcuda.so is the driver: present only where a GPU is. Elsewhere link against a stub
# with the driver API's symbols (on a GPU machine the binary loads the real driver).
if ! has_driver && [ ! -e "$cu/lib/libcuda.so" ]; then
    stub_dir=$toolkit/stub
    mkdir -p "$stub_dir"
    echo "no NVIDIA driver here: building the libraries first, then a link stub"
    # The rlibs exist once compilation is done; the link step is what fails without it.
    cargo build --release --features "$features" "${cargo_args[@]}" 2>/dev/null || true
    nm -u --format=just-symbols "${CARGO_TARGET_DIR:-target}"/release/deps/*.rlib 2>/dev/null \
        | grep -E '^cu[A-Z]' | sort -u >"$stub_dir/symbols.txt" || true
    [ -s "$stub_dir/symbols.txt" ] || { echo "found no cu* symbols to stub" >&2; exit 1; }
    # Every driver call returns CUDA_ERROR_NO_DEVICE (100), so a binary that loads the
    # stub (tests here, with it on LD_LIBRARY_PATH) hears "no GPU", not garbage.
    sed 's/.*/int &(void) { return 100; }/' "$stub_dir/symbols.txt" >"$stub_dir/libcuda_stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub_dir/libcuda.so" "$stub_dir/libcuda_stub.c"
    ln -sf libcuda.so "$stub_dir/libcuda.so.1"
    export LIBRARY_PATH=$stub_dir:$LIBRARY_PATH
    echo "linking against a stub libcuda.so ($(wc -l <"$stub_dir/symbols.txt") symbols)"
fi

cargo build --release --features "$features" "${cargo_args[@]}"
echo "built ${CARGO_TARGET_DIR:-target}/release/easel with $features for compute capability $cap"
