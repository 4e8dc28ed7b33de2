#!/usr/bin/env bash
# Streams a run's log from the workers, each line prefixed by the worker's hostname.
usage() {
  cat <<'USAGE'
Usage: tpu_scripts/logs.sh --project=P --zone=Z --name=N [--run-name=R] [--worker=W] [--lines=K] [--no-follow]

Prints the last K lines of ~/sjjax-logs/R.log and follows it (tail -F) on worker W.
Lines are prefixed with [hostname]. Ctrl-C stops following; the run goes on.

  --project P, --zone Z, --name N   the TPU (env SJJAX_PROJECT, SJJAX_ZONE, SJJAX_TPU_NAME)
  --run-name R           run to show (default: the latest launched on each worker)
  --worker W             all (default) or a worker index (0 is the host that logs metrics)
  --lines K              lines of history to print first (default 100)
  --no-follow            print and exit instead of following
  --dry-run              print the commands (one per line) instead of running them
  -h, --help             this help
USAGE
}

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUN_NAME=""
WORKER=all
LINES=100
FOLLOW=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --run-name|--run-name=*) flag_value "$@"; RUN_NAME="$FLAG_VALUE"; shift "$FLAG_SHIFT" ;;
    --worker|--worker=*) flag_value "$@"; WORKER="$FLAG_VALUE"; shift "$FLAG_SHIFT" ;;
    --lines|--lines=*) flag_value "$@"; LINES="$FLAG_VALUE"; shift "$FLAG_SHIFT" ;;
    --no-follow) FOLLOW=0; shift ;;
    *) parse_common_flag "$@"; shift "$FLAG_SHIFT" ;;
  esac
done

require_target
[[ "$WORKER" == all || "$WORKER" =~ ^[0-9]+$ ]] || die "--worker $WORKER: 'all' or an index"
[[ "$LINES" =~ ^[0-9]+$ ]] || die "--lines $LINES: a number"
[[ -z "$RUN_NAME" || "$RUN_NAME" =~ ^[A-Za-z0-9._-]+$ ]] || die "--run-name $RUN_NAME: bad name"
gcloud_target_flags

log="$REMOTE_LOGS/${RUN_NAME:-latest}.log"
follow=""
[[ "$FOLLOW" == 1 ]] && follow=" -F"
remote="tail -n $LINES$follow $log | sed -u \"s/^/[\$(hostname)] /\""

run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --worker="$WORKER" "${GCLOUD_TARGET[@]}" \
  --command="$remote"
