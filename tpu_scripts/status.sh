#!/usr/bin/env bash
# Shows the TPU's state (or its queued resource's) and what runs on its workers.
usage() {
  cat <<'USAGE'
Usage: tpu_scripts/status.sh --project=P --zone=Z --name=N [--queued] [--runs]

  --project P, --zone Z, --name N   the TPU (env SJJAX_PROJECT, SJJAX_ZONE, SJJAX_TPU_NAME)
  --queued               describe the queued resource (state WAITING_FOR_RESOURCES,
                         PROVISIONING, ACTIVE, ...) instead of the node
  --runs                 also list each worker's latest run and whether it is alive
  --dry-run              print the commands (one per line) instead of running them
  -h, --help             this help
USAGE
}

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUNS=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=1; shift ;;
    *) parse_common_flag "$@"; shift "$FLAG_SHIFT" ;;
  esac
done

require_target
gcloud_target_flags

if [[ "$QUEUED" == 1 ]]; then
  run gcloud compute tpus queued-resources describe "$TPU_NAME" "${GCLOUD_TARGET[@]}" \
    --format='value(state.state)'
else
  run gcloud compute tpus tpu-vm describe "$TPU_NAME" "${GCLOUD_TARGET[@]}" \
    --format='value(state,acceleratorType,runtimeVersion)'
fi
if [[ "$RUNS" == 1 ]]; then
  remote="run=\$(cat $REMOTE_LOGS/latest 2>/dev/null || true)"
  remote+="; if [ -n \"\$run\" ] && kill -0 \"\$(cat $REMOTE_LOGS/\$run.pid)\" 2>/dev/null"
  remote+="; then echo \"\$(hostname): \$run running\"; else echo \"\$(hostname): \${run:-no run} not running\"; fi"
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --worker=all "${GCLOUD_TARGET[@]}" \
    --command="$remote"
fi
