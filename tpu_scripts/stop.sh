#!/usr/bin/env bash
# Stops a run started by launch.sh on every worker (the TPU itself stays up).
usage() {
  cat <<'USAGE'
Usage: tpu_scripts/stop.sh --project=P --zone=Z --name=N [--run-name=R]

Sends SIGTERM to the process group of run R (its pid is in ~/sjjax-logs/R.pid) on every
worker (--worker=all), which frees the TPU for the next launch. Use delete.sh to
delete the TPU itself.

  --project P, --zone Z, --name N   the TPU (env SJJAX_PROJECT, SJJAX_ZONE, SJJAX_TPU_NAME)
  --run-name R           run to stop (default: the latest launched)
  --dry-run              print the commands (one per line) instead of running them
  -h, --help             this help
USAGE
}

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUN_NAME=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --run-name|--run-name=*) flag_value "$@"; RUN_NAME="$FLAG_VALUE"; shift "$FLAG_SHIFT" ;;
    *) parse_common_flag "$@"; shift "$FLAG_SHIFT" ;;
  esac
done

require_target
[[ -z "$RUN_NAME" || "$RUN_NAME" =~ ^[A-Za-z0-9._-]+$ ]] || die "--run-name $RUN_NAME: bad name"
gcloud_target_flags

if [[ -n "$RUN_NAME" ]]; then
  remote="run=$RUN_NAME"
else
  remote="run=\$(cat $REMOTE_LOGS/latest 2>/dev/null || true)"
fi
remote+="; pidfile=$REMOTE_LOGS/\$run.pid"
remote+="; if [ -n \"\$run\" ] && [ -f \"\$pidfile\" ] && kill -TERM -- -\"\$(cat \"\$pidfile\")\" 2>/dev/null"
remote+="; then echo \"\$(hostname): stopped \$run\"; else echo \"\$(hostname): \${run:-no run} is not running\"; fi"

run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --worker=all "${GCLOUD_TARGET[@]}" \
  --command="$remote"
