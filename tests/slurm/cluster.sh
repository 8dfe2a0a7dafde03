#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on localhost, for tests (Debian 12, slurm-wlm 22.05).
#
#   tests/slurm/cluster.sh start    # idempotent: reuses a cluster this script already started
#   tests/slurm/cluster.sh stop     # stops only the daemons this script started, by PID
#   tests/slurm/cluster.sh status   # exit 0 when the node is up (sinfo), 1 otherwise
#   tests/slurm/cluster.sh env      # print the paths (state dir, logs, jobcomp log)
#
# Needs root and the packages from .ci/slurm-setup.sh. No systemd: the daemons are started by
# hand (munged as the munge user, then slurmctld, then slurmd) and their PIDs recorded under
# $EMOGRID_SLURM_DIR (default /tmp/emogrid-slurm). The configs live there too; /etc/slurm/
# slurm.conf and gres.conf are symlinks to them, because the executor plugin strips SLURM_CONF
# (with all SLURM_* variables) before the srun it runs inside each job.
#
# Fake GPUs: EMOGRID_SLURM_GPUS (default 4) character devices made with mknod (a file-less gres
# is silently dropped and the node goes INVALID); SLURM sets CUDA_VISIBLE_DEVICES from them.
# Every finished job is appended to $DIR/jobcomp.log (jobcomp/filetxt): proof it went through
# sbatch without needing slurmdbd. Status queries therefore use squeue (MinJobAge=600).
set -euo pipefail

DIR="${EMOGRID_SLURM_DIR:-/tmp/emogrid-slurm}"
NGPUS="${EMOGRID_SLURM_GPUS:-4}"
NCPUS="${EMOGRID_SLURM_CPUS:-4}"
NODE="$(hostname -s)"
CONF_DIR=/etc/slurm

log() { echo "cluster.sh: $*" >&2; }
die() {
    log "error: $*"
    [[ "${STARTING:-0}" == 1 ]] && { STARTING=0; cmd_stop || true; }
    exit 1
}

alive() {  # alive PIDFILE -> 0 when the recorded process still runs
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_up() {
    local state
    state="$(timeout 5 sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1)" || return 1
    [[ "$state" == idle* || "$state" == mix* || "$state" == alloc* ]]
}

write_configs() {
    mkdir -p "$DIR"/{state,spool,dev,log}
    local i
    for ((i = 0; i < NGPUS; i++)); do
        [[ -c "$DIR/dev/gpu$i" ]] || { rm -f "$DIR/dev/gpu$i"; mknod "$DIR/dev/gpu$i" c 1 3; }
    done
    local mem_mb
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2/1024*0.8}' /proc/meminfo)
    local gres_line="" gres_types=""
    if ((NGPUS > 0)); then
        gres_line="Gres=gpu:$NGPUS"
        gres_types="GresTypes=gpu"
    fi
    cat >"$DIR/slurm.conf" <<CONF
# written by tests/slurm/cluster.sh -- a local single-node test cluster
ClusterName=emogrid-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.daemon.pid
SlurmdPidFile=$DIR/slurmd.daemon.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
SchedulerType=sched/backfill
$gres_types
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NCPUS RealMemory=$mem_mb $gres_line State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
CONF
    if ((NGPUS > 0)); then
        echo "NodeName=$NODE Name=gpu File=$DIR/dev/gpu[0-$((NGPUS - 1))]" >"$DIR/gres.conf"
    else
        : >"$DIR/gres.conf"
    fi
    mkdir -p "$CONF_DIR"
    local f
    for f in slurm.conf gres.conf; do
        if [[ -e "$CONF_DIR/$f" || -L "$CONF_DIR/$f" ]]; then
            if [[ "$(readlink "$CONF_DIR/$f" || true)" != "$DIR/$f" ]]; then
                die "$CONF_DIR/$f exists and is not ours (a real cluster config?); refusing to replace it"
            fi
        else
            ln -s "$DIR/$f" "$CONF_DIR/$f"
        fi
    done
}

start_munge() {
    if alive "$DIR/munged.pid"; then return 0; fi
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "munged already running (not ours); using it"
        return 0
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    [[ -s /etc/munge/munge.key ]] || {
        /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    }
    # setpriv execs munged as the munge user: the PID recorded is munged's own
    start_daemon munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground --force
    local i
    for ((i = 0; i < 50; i++)); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
        alive "$DIR/munged.pid" || die "munged died; see $DIR/log/munged.out"
        sleep 0.1
    done
    munge -n </dev/null | unmunge >/dev/null || die "munge does not work; see /var/log/munge/munged.log"
}

start_daemon() {  # start_daemon NAME ARGS... : foreground daemon in its own session, PID recorded
    local name="$1"
    shift
    if alive "$DIR/$name.pid"; then return 0; fi
    setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
    echo $! >"$DIR/$name.pid"
}

cmd_start() {
    [[ $EUID -eq 0 ]] || die "needs root"
    for b in slurmctld slurmd munged sbatch squeue sinfo; do
        command -v "$b" >/dev/null || [[ -x "/usr/sbin/$b" ]] || die "$b not installed (run .ci/slurm-setup.sh)"
    done
    if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && node_up; then
        log "already running (state in $DIR)"
        return 0
    fi
    STARTING=1
    mkdir -p "$DIR"
    write_configs
    start_munge
    start_daemon slurmctld /usr/sbin/slurmctld -D -c
    local i
    for ((i = 0; i < 100; i++)); do
        timeout 2 scontrol ping 2>/dev/null | grep -q UP && break
        alive "$DIR/slurmctld.pid" || die "slurmctld died; see $DIR/log/slurmctld.log"
        sleep 0.2
    done
    start_daemon slurmd /usr/sbin/slurmd -D
    for ((i = 0; i < 150; i++)); do
        if node_up; then
            STARTING=0
            log "up: node $NODE, $NCPUS cpus, $NGPUS fake gpus, state in $DIR"
            return 0
        fi
        alive "$DIR/slurmd.pid" || die "slurmd died; see $DIR/log/slurmd.log"
        sleep 0.2
    done
    sinfo -N -l >&2 || true
    die "node $NODE did not come up within 30 s; see $DIR/log/"
}

stop_pid() {  # stop_pid PIDFILE : TERM, wait up to 10 s, then KILL
    local pidfile="$1" pid i
    [[ -s "$pidfile" ]] || return 0
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

cmd_stop() {
    # cancel what is left in our cluster (only when our controller runs), then the daemons
    if alive "$DIR/slurmctld.pid"; then
        local jobs
        jobs="$(timeout 5 squeue -h -o %i 2>/dev/null || true)"
        if [[ -n "$jobs" ]]; then
            # shellcheck disable=SC2086
            timeout 5 scancel $jobs 2>/dev/null || true
            sleep 1
        fi
    fi
    stop_pid "$DIR/slurmd.pid"
    stop_pid "$DIR/slurmctld.pid"
    stop_pid "$DIR/munged.pid"
    local f
    for f in slurm.conf gres.conf; do
        if [[ -L "$CONF_DIR/$f" && "$(readlink "$CONF_DIR/$f")" == "$DIR/$f" ]]; then
            rm -f "$CONF_DIR/$f"
        fi
    done
    log "stopped (logs kept in $DIR/log)"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) node_up ;;
env)
    echo "EMOGRID_SLURM_DIR=$DIR"
    echo "SLURM_LOGS=$DIR/log"
    echo "JOBCOMP_LOG=$DIR/jobcomp.log"
    echo "NODE=$NODE"
    ;;
*)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
