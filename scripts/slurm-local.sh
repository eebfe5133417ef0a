#!/usr/bin/env bash
# A one-machine Slurm cluster for the tests and for trying `sweep --slurm` without a real cluster:
# munged + slurmctld + slurmd (Debian's slurm-wlm, munge), partition `debug`, the machine's cores.
# Everything lives in one folder (config, state, logs, munge socket and key), so it touches nothing in
# /etc and several folders can coexist on different ports.
#
#   scripts/slurm-local.sh start [DIR]   # start (or reuse) the cluster; prints the line to export
#   scripts/slurm-local.sh stop [DIR]    # stop its daemons
#   scripts/slurm-local.sh status [DIR]  # sinfo of the cluster
#
# DIR defaults to $MPDIT_SLURM_DIR or /tmp/mpdit-slurm; MPDIT_SLURM_PORT (default 6817) is slurmctld's
# port, slurmd takes the next one. Clients find the cluster through SLURM_CONF=DIR/slurm.conf.
# A second "node" (local2, MPDIT_SLURM_NODES=2) is a second slurmd on the same host (`slurmd -N`), so
# jobs with `--nodes 2` can be run on one machine.
set -euo pipefail

cmd=${1:-start}
dir=${2:-${MPDIT_SLURM_DIR:-/tmp/mpdit-slurm}}
port=${MPDIT_SLURM_PORT:-6817}
nodes=${MPDIT_SLURM_NODES:-2}
conf="$dir/slurm.conf"

die() { echo "slurm-local: $*" >&2; exit 1; }

need_tools() {
    for tool in munged mungekey slurmctld slurmd sinfo; do
        command -v "$tool" >/dev/null || die "$tool not found; install Debian's slurm-wlm and munge (make install)"
    done
}

write_conf() {
    local cpus mem_mb user
    cpus=$(nproc)
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 / nodes ))  # half the RAM, split
    user=$(id -un)
    {
        echo "ClusterName=mpditlocal"
        echo "SlurmctldHost=localhost(127.0.0.1)"
        echo "SlurmctldPort=$port"
        echo "SlurmdPort=$((port + 1))"
        echo "SlurmUser=$user"
        echo "SlurmdUser=root"
        echo "AuthType=auth/munge"
        echo "CredType=cred/munge"
        echo "AuthInfo=socket=$dir/munge/munge.socket"
        echo "StateSaveLocation=$dir/state"
        echo "SlurmdSpoolDir=$dir/spool/%n"
        echo "SlurmctldPidFile=$dir/slurmctld.pid"
        echo "SlurmdPidFile=$dir/slurmd-%n.pid"
        echo "SlurmctldLogFile=$dir/log/slurmctld.log"
        echo "SlurmdLogFile=$dir/log/slurmd-%n.log"
        # no cgroups in containers: track job processes by parent pid, bind nothing
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "MpiDefault=none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_CPU"
        echo "SchedulerType=sched/backfill"
        echo "ReturnToService=2"
        echo "MinJobAge=600"
        # Slurm's record of finished jobs without a database (sacct needs slurmdbd + MySQL)
        echo "AccountingStorageType=accounting_storage/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "JobCompType=jobcomp/filetxt"
        echo "JobCompLoc=$dir/log/jobcomp.log"
        echo "KillWait=5"
        for i in $(seq 1 "$nodes"); do
            echo "NodeName=local$i NodeHostname=$(hostname) NodeAddr=127.0.0.1 Port=$((port + i)) CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN"
        done
        echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES"
    } > "$conf"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    need_tools
    mkdir -p "$dir"/{state,log,munge}
    chmod 700 "$dir/munge"
    for i in $(seq 1 "$nodes"); do mkdir -p "$dir/spool/local$i"; done
    write_conf
    [ -f "$dir/munge/munge.key" ] || mungekey --create --keyfile="$dir/munge/munge.key" >/dev/null
    chmod 600 "$dir/munge/munge.key"
    if ! alive "$dir/munge/munged.pid"; then
        munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
            --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
            --seed-file="$dir/munge/munged.seed"
    fi
    export SLURM_CONF="$conf"
    alive "$dir/slurmctld.pid" || slurmctld -f "$conf"
    for i in $(seq 1 "$nodes"); do
        alive "$dir/slurmd-local$i.pid" || slurmd -f "$conf" -N "local$i"
    done
    for _ in $(seq 1 60); do  # nodes register within a few seconds
        idle=$(sinfo -h -p debug -t idle,mix,alloc -o '%D' 2>/dev/null | awk '{n += $1} END {print n + 0}')
        [ "$idle" -ge "$nodes" ] && { echo "export SLURM_CONF=$conf"; return 0; }
        sleep 1
    done
    sinfo -N -l >&2 || true
    tail -n 20 "$dir"/log/*.log >&2 || true
    die "the nodes did not come up within 60 s; logs in $dir/log"
}

stop() {
    for pidfile in "$dir"/slurmd-*.pid "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        if alive "$pidfile"; then
            pid=$(cat "$pidfile")
            kill "$pid"
            for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        fi
    done
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) SLURM_CONF="$conf" sinfo -N -l ;;
    *) die "unknown command $cmd; allowed: start, stop, status" ;;
esac
