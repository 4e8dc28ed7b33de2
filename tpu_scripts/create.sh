#!/usr/bin/env bash
# Creates a Cloud TPU VM or pod slice (directly, or through a queued resource).
usage() {
  cat <<'USAGE'
Usage: tpu_scripts/create.sh --project=P --zone=Z --name=N --accelerator-type=T [options] [-- GCLOUD_ARGS...]

Creates the TPU VM (single host) or pod slice (multi-host) N.

  --project P            GCP project (env SJJAX_PROJECT)
  --zone Z               zone, e.g. us-central2-b for v4 (env SJJAX_ZONE)
  --name N               TPU name (env SJJAX_TPU_NAME)
  --accelerator-type T   v4-8, v4-32, v5litepod-64, v5p-16, v6e-8 ... (env SJJAX_ACCELERATOR_TYPE)
  --runtime-version V    TPU software image (env SJJAX_RUNTIME_VERSION); default by family:
                         v2/v3/v4 tpu-ubuntu2204-base, v5e v2-alpha-tpuv5-lite,
                         v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e
  --queued               request it as a queued resource (needed for most v5e/v5p/v6e
                         capacity); check with status.sh until ACTIVE (env SJJAX_QUEUED=1)
  --spot                 spot (preemptible) capacity
  --create-bucket        also create the bucket of --bucket (gs://B[/prefix], env SJJAX_BUCKET)
                         for run directories, in the zone's region (once per project)
  --dry-run              print the commands (one per line) instead of running them
  -h, --help             this help
  -- GCLOUD_ARGS         passed on to the gcloud create command (e.g. --network=...)
USAGE
}

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SPOT=0
CREATE_BUCKET=0
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --spot) SPOT=1; shift ;;
    --create-bucket) CREATE_BUCKET=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) parse_common_flag "$@"; shift "$FLAG_SHIFT" ;;
  esac
done

require_target
require ACCELERATOR_TYPE --accelerator-type SJJAX_ACCELERATOR_TYPE
if [[ -z "$RUNTIME_VERSION" ]]; then
  RUNTIME_VERSION="$(default_runtime_version "$ACCELERATOR_TYPE")" ||
    die "no default runtime version for $ACCELERATOR_TYPE: pass --runtime-version"
fi
normalize_bucket
if [[ "$CREATE_BUCKET" == 1 ]]; then
  require BUCKET --bucket SJJAX_BUCKET
fi
gcloud_target_flags
info "$ACCELERATOR_TYPE: $(num_hosts "$ACCELERATOR_TYPE") host(s), runtime $RUNTIME_VERSION"

spot=()
[[ "$SPOT" == 1 ]] && spot=(--spot)

if [[ "$QUEUED" == 1 ]]; then
  run gcloud compute tpus queued-resources create "$TPU_NAME" "${GCLOUD_TARGET[@]}" \
    --node-id="$TPU_NAME" --accelerator-type="$ACCELERATOR_TYPE" \
    --runtime-version="$RUNTIME_VERSION" "${spot[@]}" "${EXTRA[@]}"
  info "queued; watch it with: tpu_scripts/status.sh --queued (state ACTIVE = ready)"
else
  run gcloud compute tpus tpu-vm create "$TPU_NAME" "${GCLOUD_TARGET[@]}" \
    --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION" \
    "${spot[@]}" "${EXTRA[@]}"
fi

if [[ "$CREATE_BUCKET" == 1 ]]; then
  bucket_root="${BUCKET#gs://}"
  bucket_root="gs://${bucket_root%%/*}"
  run gcloud storage buckets create "$bucket_root" --project="$PROJECT" \
    --location="${ZONE%-*}" --uniform-bucket-level-access
fi
