#!/usr/bin/env bash
# Deletes the TPU VM / pod slice (or its queued resource).
usage() {
  cat <<'USAGE'
Usage: tpu_scripts/delete.sh --project=P --zone=Z --name=N [--queued] [--yes]

Deletes the TPU N. With --queued, deletes the queued resource N and (--force) the
node it holds. Checkpoints in gs:// are kept.

  --project P, --zone Z, --name N   the TPU (env SJJAX_PROJECT, SJJAX_ZONE, SJJAX_TPU_NAME)
  --queued               it was created with create.sh --queued (env SJJAX_QUEUED=1)
  --yes                  do not ask for confirmation (gcloud --quiet)
  --dry-run              print the commands (one per line) instead of running them
  -h, --help             this help
USAGE
}

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

YES=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --yes|-y) YES=(--quiet); shift ;;
    *) parse_common_flag "$@"; shift "$FLAG_SHIFT" ;;
  esac
done

require_target
gcloud_target_flags

if [[ "$QUEUED" == 1 ]]; then
  run gcloud compute tpus queued-resources delete "$TPU_NAME" "${GCLOUD_TARGET[@]}" --force \
    "${YES[@]}"
else
  run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${GCLOUD_TARGET[@]}" "${YES[@]}"
fi
