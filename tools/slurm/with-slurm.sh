#!/usr/bin/env bash
# Run a command (the test suite) with a local single-node Slurm cluster: install slurm-wlm and
# munge when they are missing (Debian, root), start the cluster in a fresh lab directory, run
# the command in its environment, and stop the cluster on exit whatever happens. If the
# cluster cannot be started, the command still runs, with CTTA_SLURM_ERROR set to the reason,
# so that the Slurm test fails and says why instead of being skipped.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
reason=
if ! command -v slurmctld >/dev/null && [ ! -x /usr/sbin/slurmctld ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing slurm-wlm and munge (apt-get)" >&2
    { apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1; }; } ||
      reason="apt-get install slurm-wlm munge failed"
  else
    reason="slurm-wlm and munge are not installed, and installing them needs root and apt-get"
  fi
fi
lab=$(mktemp -d /tmp/ctta-slurm.XXXXXX)
trap 'bash "$here/stop.sh" "$lab"; [ -z "$reason" ] && rm -rf "$lab"' EXIT
if [ -z "$reason" ]; then
  if SLURM_LAB=$lab bash "$here/start.sh" >/dev/null 2>"$lab/start.err"; then
    source "$lab/env.sh"
    export CTTA_SLURM_LAB=$lab
  else
    reason="local Slurm did not start ($lab/start.err): $(tail -n 3 "$lab/start.err" | tr '\n' ' ')"
  fi
fi
[ -n "$reason" ] && export CTTA_SLURM_ERROR=$reason
"$@"
status=$?
exit $status
