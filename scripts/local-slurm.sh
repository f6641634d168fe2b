#!/usr/bin/env bash
# A single-node SLURM on this machine, for trying `teravox run --executor slurm` and for
# the tests (tests/slurm_cluster.py).  Needs root and Debian's slurmctld, slurmd,
# slurm-client and munge packages (.ci/install-slurm.sh installs them).
#
#   scripts/local-slurm.sh start    # munged + slurmctld + slurmd, waits until the node is idle
#   scripts/local-slurm.sh status   # daemons and sinfo
#   scripts/local-slurm.sh stop     # cancels this cluster's jobs, stops the daemons by pid
#
# Everything (slurm.conf, munge key and socket, state, spool, daemon logs) lives in
# $TERAVOX_SLURM_DIR (default /tmp/teravox-slurm), so nothing under /etc is touched and
# several instances can coexist on different ports ($TERAVOX_SLURM_PORT, default 6817;
# slurmd takes the next port).  Point the SLURM commands at it with
#   export SLURM_CONF=$TERAVOX_SLURM_DIR/slurm.conf
#
# Memory: there are no cgroups here, so --mem is enforced by polling
# (JobAcctGatherType=jobacct_gather/linux every second with OverMemoryKill): a job step
# whose resident memory exceeds its --mem is killed and its log says
# "exceeded memory limit".  Accounting (slurmdbd, sacct) is off, as on many test clusters.
set -euo pipefail

DIR=${TERAVOX_SLURM_DIR:-/tmp/teravox-slurm}
PORT=${TERAVOX_SLURM_PORT:-6817}
CONF=$DIR/slurm.conf
WAIT_S=${TERAVOX_SLURM_WAIT_S:-60}

die() { echo "local-slurm: $*" >&2; exit 1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

tail_logs() {
    for f in "$DIR"/log/*.log; do
        [ -f "$f" ] || continue
        echo "--- $f (last lines)" >&2
        tail -n 10 "$f" >&2
    done
}

# A failed start: show the daemons' logs, stop what did start, exit non-zero.
fail() {
    tail_logs
    stop >/dev/null 2>&1 || true
    die "$*"
}

write_conf() {
    local cpus mem
    # What slurmd itself detects, so the node is not drained for "low RealMemory".
    cpus=$(slurmd -C | sed -n 's/.* CPUs=\([0-9]*\).*/\1/p')
    mem=$(slurmd -C | sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p')
    [ -n "$cpus" ] && [ -n "$mem" ] || die "slurmd -C did not report CPUs and RealMemory"
    # Leave some memory to the system and the daemons.
    mem=$(( mem * 9 / 10 ))
    cat > "$CONF" <<EOF
# Written by scripts/local-slurm.sh: a single-node SLURM for tests.
ClusterName=teravox-local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
# No cgroups in containers: track processes through /proc, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# Cores and memory are consumable; --mem is enforced by the 1 s RSS poll below.
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
InactiveLimit=0
MinJobAge=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    [ "$(id -u)" = 0 ] || die "must run as root (slurmd and munged here run as root)"
    for exe in munged slurmctld slurmd sinfo sbatch; do
        command -v "$exe" >/dev/null || die "$exe not found: run .ci/install-slurm.sh (apt-get install slurmctld slurmd slurm-client munge)"
    done
    if pid_alive "$DIR/run/slurmctld.pid" && pid_alive "$DIR/run/slurmd.pid"; then
        echo "local-slurm: already running in $DIR"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    mkdir -p "$DIR"/{munge,state,spool/localhost,run,log}
    # Clients need to reach the socket; the key inside stays readable by root only.
    chmod 755 "$DIR/munge"
    write_conf

    # munge: our own key and socket, so a system munged (if any) is left alone.
    if [ ! -s "$DIR/munge/munge.key" ]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        chmod 400 "$DIR/munge/munge.key"
    fi
    if ! pid_alive "$DIR/run/munged.pid"; then
        munged --force --socket="$DIR/munge/munge.socket.2" --key-file="$DIR/munge/munge.key" \
            --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
            --seed-file="$DIR/munge/munged.seed" || fail "munged did not start"
    fi

    export SLURM_CONF=$CONF
    pid_alive "$DIR/run/slurmctld.pid" || slurmctld -f "$CONF" -i || fail "slurmctld did not start"
    pid_alive "$DIR/run/slurmd.pid" || slurmd -f "$CONF" -N localhost || fail "slurmd did not start"

    # Wait until the node accepts jobs.
    local state="" i
    for (( i = 0; i < WAIT_S * 2; i++ )); do
        state=$(sinfo -h -N -n localhost -o %T 2>/dev/null || true)
        case "$state" in
            idle|mixed|allocated) break ;;
        esac
        sleep 0.5
    done
    case "$state" in
        idle|mixed|allocated) ;;
        *) fail "node not idle after ${WAIT_S}s (state: '${state:-no answer}')" ;;
    esac
    echo "local-slurm: running in $DIR (partition debug, node localhost: $state)"
    echo "export SLURM_CONF=$CONF"
}

stop() {
    export SLURM_CONF=$CONF
    if [ -f "$CONF" ] && pid_alive "$DIR/run/slurmctld.pid"; then
        # Only this cluster's jobs: SLURM_CONF points at our own controller.
        scancel --quiet --partition=debug 2>/dev/null || true
        for _ in $(seq 20); do
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    # slurmd and slurmctld together (each takes a moment to save its state), munged last.
    kill_wait slurmd slurmctld
    kill_wait munged
    echo "local-slurm: stopped ($DIR)"
}

kill_wait() {
    local name pid pids=()
    for name in "$@"; do
        pid_alive "$DIR/run/$name.pid" && pids+=("$(cat "$DIR/run/$name.pid")")
    done
    [ "${#pids[@]}" -gt 0 ] || return 0
    kill "${pids[@]}" 2>/dev/null || true
    local alive
    for _ in $(seq 100); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    done
    for name in "$@"; do rm -f "$DIR/run/$name.pid"; done
}

status() {
    local name up=0
    for name in munged slurmctld slurmd; do
        if pid_alive "$DIR/run/$name.pid"; then
            echo "$name: running (pid $(cat "$DIR/run/$name.pid"))"
        else
            echo "$name: not running"; up=1
        fi
    done
    if [ "$up" = 0 ]; then
        SLURM_CONF=$CONF sinfo
        echo "export SLURM_CONF=$CONF"
    fi
    return "$up"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status   (state in \$TERAVOX_SLURM_DIR, default /tmp/teravox-slurm)" >&2; exit 2 ;;
esac
