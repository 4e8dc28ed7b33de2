#!/usr/bin/env bash
# Launches `python -m sjjax.main --config=...` on every worker, in the background.
usage() {
  cat <<'USAGE'
Usage: tpu_scripts/launch.sh --project=P --zone=Z --name=N --bucket=gs://B --config=configs/X.py[:preset]
                             [--run-name=R] [--config.key=value ...] [-- more sjjax flags]

Starts `python -m sjjax.main --config=X --config.run_dir=gs://B/runs/R [overrides]` on
every worker (--worker=all: all hosts of a pod slice must run the same program) under
nohup, detached from the ssh session. Orbax writes checkpoints to the gs:// run dir
directly. Each worker logs to ~/sjjax-logs/R.log (and ~/sjjax-logs/latest.log);
when the run ends the log is copied to gs://B/runs/R/logs/<hostname>.log.
Follow it with logs.sh, stop it with stop.sh.

  --project P, --zone Z, --name N   the TPU (env SJJAX_PROJECT, SJJAX_ZONE, SJJAX_TPU_NAME)
  --config PATH[:ARG]    config file, relative to the repository (required)
  --bucket B             gs://bucket[/prefix] that holds run dirs (env SJJAX_BUCKET)
  --run-name R           run directory name (default: <config name>-<UTC time>)
  --run-dir D            full run dir (default gs://B/runs/R); replaces --bucket
  --env KEY=VALUE        environment variable for the run (repeatable)
  --config.KEY=VALUE     config overrides, passed on verbatim (as are words after --)
  --dry-run              print the commands (one per line) instead of running them
  -h, --help             this help
USAGE
}

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CONFIG=""
RUN_NAME=""
RUN_DIR=""
ENVS=("SJJAX_DISTRIBUTED=1")  # every host joins one JAX runtime (jax.distributed)
OVERRIDES=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config|--config=*) flag_value "$@"; CONFIG="$FLAG_VALUE"; shift "$FLAG_SHIFT" ;;
    --run-name|--run-name=*) flag_value "$@"; RUN_NAME="$FLAG_VALUE"; shift "$FLAG_SHIFT" ;;
    --run-dir|--run-dir=*) flag_value "$@"; RUN_DIR="$FLAG_VALUE"; shift "$FLAG_SHIFT" ;;
    --env|--env=*)
      flag_value "$@"
      [[ "$FLAG_VALUE" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env $FLAG_VALUE: expected KEY=VALUE"
      ENVS+=("$FLAG_VALUE"); shift "$FLAG_SHIFT" ;;
    --config.run_dir|--config.run_dir=*) die "set the run dir with --run-dir or --bucket" ;;
    --config.*)
      [[ "$1" == *=* ]] || die "$1: write config overrides as --config.key=value"
      OVERRIDES+=("$1"); shift ;;
    --) shift; OVERRIDES+=("$@"); break ;;
    *) parse_common_flag "$@"; shift "$FLAG_SHIFT" ;;
  esac
done

require_target
require CONFIG --config SJJAX_CONFIG
normalize_bucket
if [[ -z "$RUN_NAME" ]]; then
  base="$(basename "${CONFIG%%:*}" .py)"
  RUN_NAME="$base-$(date -u +%Y%m%d-%H%M%S)"
fi
[[ "$RUN_NAME" =~ ^[A-Za-z0-9._-]+$ ]] || die "--run-name $RUN_NAME: use letters, digits, . _ -"
if [[ -z "$RUN_DIR" ]]; then
  require BUCKET --bucket SJJAX_BUCKET
  RUN_DIR="$BUCKET/runs/$RUN_NAME"
fi
[[ "$RUN_DIR" == gs://* ]] || info "warning: run dir $RUN_DIR is not on gs://: each worker writes its own local copy"
gcloud_target_flags

# The program every worker runs.
program=(env "${ENVS[@]}" "$REMOTE_VENV/bin/python" -m sjjax.main --config="$CONFIG"
         --config.run_dir="$RUN_DIR" "${OVERRIDES[@]}")
[[ ${#ENVS[@]} -gt 0 ]] || program=("${program[@]:1}")
log="$REMOTE_LOGS/$RUN_NAME.log"
# $REMOTE_* stay unquoted so that the remote shell expands $HOME.
prog_line=""
for arg in "${program[@]}"; do
  if [[ "$arg" == "$REMOTE_VENV"* ]]; then prog_line+="${prog_line:+ }$arg"
  else prog_line+="${prog_line:+ }$(quote_arg "$arg")"; fi
done
job="cd $REMOTE_REPO && $prog_line > $log 2>&1; rc=\$?; echo \"exit status \$rc\" >> $log;"
job+=" gcloud storage cp $log $(quote_arg "$RUN_DIR")/logs/\$(hostname).log > /dev/null 2>&1 || true; exit \$rc"
remote="mkdir -p $REMOTE_LOGS && ln -sfn $RUN_NAME.log $REMOTE_LOGS/latest.log"
remote+=" && echo $RUN_NAME > $REMOTE_LOGS/latest"
remote+=" && (setsid nohup bash -c $(quote_arg "$job") > /dev/null 2>&1 < /dev/null & echo \$! > $REMOTE_LOGS/$RUN_NAME.pid)"
remote+=" && echo \"\$(hostname): started $RUN_NAME, pid \$(cat $REMOTE_LOGS/$RUN_NAME.pid)\""

run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --worker=all "${GCLOUD_TARGET[@]}" \
  --command="$remote"
info "run dir $RUN_DIR; follow with: tpu_scripts/logs.sh --run-name=$RUN_NAME"
