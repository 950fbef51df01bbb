#!/usr/bin/env bash
# Installs what `cargo build --features mpi` and `mpirun` need on Debian/Ubuntu:
# OpenMPI (library, headers, mpirun) and libclang for the mpi crate's bindgen.
# Does nothing when they are already installed.
set -euo pipefail
packages=(openmpi-bin libopenmpi-dev libclang-dev clang)
if dpkg -s "${packages[@]}" >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${packages[@]}"
else
    sudo -n apt-get update -qq && sudo -n apt-get install -y -qq "${packages[@]}"
fi
