#!/usr/bin/env bash
# Stop what start.sh started in $SLURM_LAB (or the directory given as $1), by recorded PIDs.
L=${1:-${SLURM_LAB:?give the lab directory as \$1 or \$SLURM_LAB}}
[ -d "$L/run" ] || exit 0
export SLURM_CONF="$L/etc/slurm.conf"
_pid() { [ -f "$L/run/$1.mypid" ] && cat "$L/run/$1.mypid"; }
_stop() {   # TERM the given pids, wait up to 10 s, then KILL survivors
  local p; for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 100); do
    local alive=0; for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return; sleep 0.1
  done
  for p in "$@"; do kill -9 "$p" 2>/dev/null || true; done
}
ctld=$(_pid slurmctld || true)
if [ -n "$ctld" ] && kill -0 "$ctld" 2>/dev/null; then
  scancel --user="$(id -un)" 2>/dev/null || true      # end running jobs (their slurmstepd) first
  for _ in $(seq 50); do [ -z "$(squeue -h -t R,CG 2>/dev/null)" ] && break; sleep 0.2; done
fi
_stop $(_pid slurmd || true) $ctld
_stop $(_pid munged || true)
rm -f "$L"/run/*.mypid
