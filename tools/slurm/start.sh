#!/usr/bin/env bash
# Start a throw-away single-node Slurm cluster (munged + slurmctld + slurmd) on localhost, as
# root, with every file under $SLURM_LAB (default: a fresh /tmp/ctta-slurm.XXXXXX) and free
# ports, so that several test sessions on one machine do not collide. On success it writes
# $SLURM_LAB/env.sh (SLURM_CONF, and PATH with a `sacct` stand-in for submitit) and prints
# the lab directory on stdout. Stop it with stop.sh (by recorded PIDs, never by name).
# Recipe: Debian 12, slurm-wlm 22.05 + munge 0.5; see notes/protocols.md.
set -euo pipefail
L=${SLURM_LAB:-$(mktemp -d /tmp/ctta-slurm.XXXXXX)}
H=$(hostname -s)
NCPU=${SLURM_CI_CPUS:-8}     # may exceed the real cores (config_overrides): more array tasks at once
MEM_MB=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 1024 ))
for tool in munged mungekey slurmctld slurmd sinfo; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "slurm start: '$tool' not found; install with: apt-get install -y slurm-wlm munge" >&2; exit 1; }
done
read -r CTLD_PORT SLURMD_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')

mkdir -p "$L"/{etc,state,spool,log,run,bin} "$L"/munge/{etc,run,lib,log}
chmod 755 "$L" "$L/munge" "$L/munge/run"          # munged: the socket directory must be world-x
chmod 700 "$L/munge/etc" "$L/munge/lib" "$L/munge/log"

# --- munge: a root-owned key and a socket under $L ---------------------------------
[ -f "$L/munge/etc/munge.key" ] || mungekey --create --keyfile="$L/munge/etc/munge.key"
chmod 400 "$L/munge/etc/munge.key"
SOCK="$L/munge/run/munge.socket.2"
/usr/sbin/munged -F --key-file="$L/munge/etc/munge.key" --socket="$SOCK" \
    --pid-file="$L/munge/run/munged.pid" --log-file="$L/munge/log/munged.log" \
    --seed-file="$L/munge/lib/munged.seed" >"$L/log/munged.stdout" 2>&1 </dev/null &
echo $! >"$L/run/munged.mypid"
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
munge -n -S "$SOCK" | unmunge -S "$SOCK" >/dev/null

# --- slurm.conf: no DNS, no cgroups, no accounting daemon ----------------------------
cat >"$L/etc/slurm.conf" <<CONF
ClusterName=ctta
SlurmctldHost=${H}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${SOCK}
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
StateSaveLocation=${L}/state
SlurmdSpoolDir=${L}/spool
SlurmctldPidFile=${L}/run/slurmctld.pid
SlurmdPidFile=${L}/run/slurmd.pid
SlurmctldLogFile=${L}/log/slurmctld.log
SlurmdLogFile=${L}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=3600
KillWait=5
InactiveLimit=0
NodeName=${H} NodeAddr=127.0.0.1 CPUs=${NCPU} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$L/etc/slurm.conf"

# --- sacct stand-in: submitit asks `sacct -o JobID,State,NodeList --parsable2 -j ID...`;
# without slurmdbd we answer from squeue, which keeps finished jobs for MinJobAge seconds.
cat >"$L/bin/sacct" <<'SH'
#!/bin/bash
ids=()
while [ $# -gt 0 ]; do
  case "$1" in
    -j|--jobs) ids+=("$2"); shift 2 ;;
    --jobs=*)  ids+=("${1#--jobs=}"); shift ;;
    -j*)       ids+=("${1#-j}"); shift ;;
    *)         shift ;;
  esac
done
echo "JobID|State|NodeList"
for id in "${ids[@]}"; do
  squeue --states=all --noheader --format='%i|%T|%N' --jobs="$id" 2>/dev/null
done
exit 0
SH
chmod +x "$L/bin/sacct"

# --- daemons in the foreground, so that $! is the daemon itself --------------------------
/usr/sbin/slurmctld -D -c -f "$SLURM_CONF" >"$L/log/slurmctld.stdout" 2>&1 </dev/null &
echo $! >"$L/run/slurmctld.mypid"
/usr/sbin/slurmd -D -N "$H" -f "$SLURM_CONF" >"$L/log/slurmd.stdout" 2>&1 </dev/null &
echo $! >"$L/run/slurmd.mypid"

state=
for _ in $(seq 120); do
  state=$(sinfo -h -o %t 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.25
done
if [ "$state" != idle ]; then
  echo "slurm start: node not idle after 30 s (state '$state'); logs:" >&2
  tail -n 20 "$L"/log/*.log >&2 || true
  exit 1
fi
cat >"$L/env.sh" <<ENV
export SLURM_CONF=$SLURM_CONF
export PATH=$L/bin:\$PATH
ENV
echo "$L"
