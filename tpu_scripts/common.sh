# shellcheck shell=bash disable=SC2034
# (SC2034: the variables set here are read by the scripts that source this file.)
# Shared by tpu_scripts/*.sh: settings from flags / environment, flag parsing, the
# dry-run runner. Sourced, never run. Each script defines usage() before sourcing.
#
# Every setting has an environment variable (flags win):
#   --project            SJJAX_PROJECT (else CLOUDSDK_CORE_PROJECT)   GCP project
#   --zone               SJJAX_ZONE                                    e.g. us-central2-b
#   --name               SJJAX_TPU_NAME                                TPU VM / queued resource name
#   --accelerator-type   SJJAX_ACCELERATOR_TYPE                        v4-32, v5litepod-64, v5p-16
#   --runtime-version    SJJAX_RUNTIME_VERSION                         default: by accelerator family
#   --bucket             SJJAX_BUCKET                                  gs://bucket[/prefix] for run dirs
#   --queued             SJJAX_QUEUED=1                                use queued resources
#   --dry-run            SJJAX_DRY_RUN=1                               print commands, run nothing

set -euo pipefail

PROJECT="${SJJAX_PROJECT:-${CLOUDSDK_CORE_PROJECT:-}}"
ZONE="${SJJAX_ZONE:-}"
TPU_NAME="${SJJAX_TPU_NAME:-}"
ACCELERATOR_TYPE="${SJJAX_ACCELERATOR_TYPE:-}"
RUNTIME_VERSION="${SJJAX_RUNTIME_VERSION:-}"
BUCKET="${SJJAX_BUCKET:-}"
QUEUED="${SJJAX_QUEUED:-0}"
DRY_RUN="${SJJAX_DRY_RUN:-0}"

# Where things live on every TPU worker (relative to the login user's $HOME; the
# remote shell expands $HOME, so the commands below keep it literal).
# shellcheck disable=SC2016
REMOTE_REPO='$HOME/sjjax'
# shellcheck disable=SC2016
REMOTE_VENV='$HOME/sjjax-venv'
# shellcheck disable=SC2016
REMOTE_LOGS='$HOME/sjjax-logs'

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

die() {
  printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2
  exit 2
}

info() {
  printf '%s: %s\n' "$(basename "$0")" "$*" >&2
}

# quote_arg ARG: ARG as one shell word (same rules as Python's shlex.quote).
quote_arg() {
  local s="$1" q="'\"'\"'"
  if [[ -n "$s" && "$s" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$s"
  else
    printf "'%s'" "${s//\'/$q}"
  fi
}

# quote_cmd ARGS...: the command line, each argument quoted, on one line.
quote_cmd() {
  local out="" arg
  for arg in "$@"; do
    out+="${out:+ }$(quote_arg "$arg")"
  done
  printf '%s' "$out"
}

# run CMD ARGS...: with --dry-run print the command (one line, shell-quoted) on stdout;
# otherwise echo it to stderr and run it.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '%s\n' "$(quote_cmd "$@")"
  else
    printf '+ %s\n' "$(quote_cmd "$@")" >&2
    "$@"
  fi
}

# flag_value "$@": reads the value of "$1" (--flag=value or --flag value) into
# FLAG_VALUE and the number of words used into FLAG_SHIFT.
flag_value() {
  case "$1" in
    --*=*) FLAG_VALUE="${1#*=}"; FLAG_SHIFT=1 ;;
    *)
      [[ $# -ge 2 ]] || die "$1 needs a value"
      FLAG_VALUE="$2"; FLAG_SHIFT=2 ;;
  esac
}

# parse_common_flag "$@": consumes one common flag; sets FLAG_SHIFT. Dies on unknown flags.
parse_common_flag() {
  FLAG_SHIFT=1
  case "$1" in
    --project|--project=*) flag_value "$@"; PROJECT="$FLAG_VALUE" ;;
    --zone|--zone=*) flag_value "$@"; ZONE="$FLAG_VALUE" ;;
    --name|--name=*) flag_value "$@"; TPU_NAME="$FLAG_VALUE" ;;
    --accelerator-type|--accelerator-type=*) flag_value "$@"; ACCELERATOR_TYPE="$FLAG_VALUE" ;;
    --runtime-version|--runtime-version=*) flag_value "$@"; RUNTIME_VERSION="$FLAG_VALUE" ;;
    --bucket|--bucket=*) flag_value "$@"; BUCKET="$FLAG_VALUE" ;;
    --queued) QUEUED=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
}

# require VAR FLAG ENVVAR: dies with a clear message when VAR is empty.
require() {
  local var="$1" flag="$2" env="$3"
  [[ -n "${!var}" ]] || die "missing $flag (or set $env)"
}

require_target() {
  require PROJECT --project SJJAX_PROJECT
  require ZONE --zone SJJAX_ZONE
  require TPU_NAME --name SJJAX_TPU_NAME
}

# The runtime (OS image) that fits an accelerator family.
default_runtime_version() {
  case "$1" in
    v2-*|v3-*|v4-*) echo "tpu-ubuntu2204-base" ;;
    v5litepod-*|v5e-*) echo "v2-alpha-tpuv5-lite" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    *) return 1 ;;
  esac
}

# Hosts (TPU VM workers) of an accelerator type: v2/v3/v4/v5p count TensorCores (8 per
# host), v5e/v6e count chips (8 on a single host, 4 per host in a multi-host slice).
num_hosts() {
  local family="${1%-*}" size="${1##*-}"
  [[ "$size" =~ ^[0-9]+$ ]] || { echo 1; return; }
  case "$family" in
    v2|v3|v4|v5p) echo $(( size > 8 ? size / 8 : 1 )) ;;
    v5litepod|v5e|v6e) echo $(( size > 8 ? size / 4 : 1 )) ;;
    *) echo 1 ;;
  esac
}

# Flags every gcloud TPU command gets.
gcloud_target_flags() {
  GCLOUD_TARGET=(--zone="$ZONE" --project="$PROJECT")
}

# Strips a trailing slash; checks the gs:// scheme.
normalize_bucket() {
  BUCKET="${BUCKET%/}"
  [[ -z "$BUCKET" || "$BUCKET" == gs://* ]] || BUCKET="gs://$BUCKET"
}
