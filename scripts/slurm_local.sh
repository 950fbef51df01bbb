#!/usr/bin/env bash
# A single-node Slurm cluster on this machine (munge + slurmctld + slurmd on localhost,
# started by hand: no systemd needed), then `srun --mpi=pmix -n RANKS easel train`.
# Shows that a run trains under Slurm as on a real cluster; see docs/ranks.md for sbatch.
#   scripts/slurm_local.sh [SKETCH] [STEPS] [RANKS]    (defaults: gan_truchet, 20, 2)
# Needs root (daemons, munge key), Debian's slurm-wlm and munge (installed if missing),
# and an easel built with the mpi feature (cargo build --release --features mpi).
# The daemons are stopped when it ends; the run directory is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
sketch=${1:-sketches/gan_truchet.rhai}
steps=${2:-20}
ranks=${3:-2}
easel=$(realpath "${EASEL:-target/release/easel}")
[ "$(id -u)" = 0 ] || { echo "slurm_local.sh starts daemons: run it as root" >&2; exit 1; }
[ -x "$easel" ] || { echo "no $easel: cargo build --release --features mpi" >&2; exit 1; }
if ! dpkg -s slurm-wlm munge >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq slurm-wlm munge
fi
scripts/mpi_setup.sh

dir=$(mktemp -d /tmp/easel-slurm.XXXXXX)
mkdir -p "$dir/spool" "$dir/state" "$dir/log"
host=$(hostname -s)
stop() {
    for pid in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
        [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
    done
}
trap stop EXIT

# munge: a key and its folders, owned by munge; one daemon for the machine.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown -R munge: /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 400 /etc/munge/munge.key
    su -s /bin/sh munge -c /usr/sbin/munged
    sleep 1
fi

cat > "$dir/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmdSpoolDir=$dir/spool
StateSaveLocation=$dir/state
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmUser=root
SlurmdUser=root
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$(nproc) RealMemory=$(( $(free -m | awk '/Mem:/ {print $2}') * 8 / 10 )) State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 30); do
    sinfo -h -o %t 2>/dev/null | grep -q idle && break
    sleep 1
done
sinfo

run="$dir/run"
# PMIx is how Slurm's srun starts MPI programs (pmi2 and none abort before MPI_Init).
OMPI_MCA_mpi_yield_when_idle=1 srun --mpi=pmix -n "$ranks" \
    "$easel" train "$sketch" --run-dir "$run" --steps "$steps"
echo "run directory: $run"
"$easel" runs "$dir"
