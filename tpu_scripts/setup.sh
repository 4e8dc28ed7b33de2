#!/usr/bin/env bash
# Installs sjjax (and jax[tpu]) on every worker of a TPU VM / pod slice.
usage() {
  cat <<'USAGE'
Usage: tpu_scripts/setup.sh --project=P --zone=Z --name=N [--repo-url=URL [--ref=REF]] [options]

Puts the sjjax source in ~/sjjax on every worker (--worker=all) and installs it with
`pip install -e '.[tpu]'` into the virtualenv ~/sjjax-venv (Python from uv, since
the TPU images ship an older Python than jax needs).

Source, one of:
  (default)              copy this checkout (working tree, uncommitted changes included;
                         .git, venvs, runs/ and caches left out) with tpu-vm scp
  --repo-url URL         git clone URL on every worker instead
  --ref REF              with --repo-url: branch, tag or commit to check out

Options:
  --project P, --zone Z, --name N   the TPU (env SJJAX_PROJECT, SJJAX_ZONE, SJJAX_TPU_NAME)
  --repo-dir DIR         the checkout to copy (default: the one holding this script)
  --python VERSION       Python for the virtualenv (default 3.12)
  --extras E             pip extras (default tpu; e.g. tpu,test)
  --no-check             skip the final `import jax` device check
  --dry-run              print the commands (one per line) instead of running them
  -h, --help             this help
USAGE
}

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REPO_URL="${SJJAX_REPO_URL:-}"
REF="${SJJAX_REF:-}"
REPO_DIR="$REPO_ROOT"
PYTHON_VERSION=3.12
EXTRAS=tpu
CHECK=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --repo-url|--repo-url=*) flag_value "$@"; REPO_URL="$FLAG_VALUE"; shift "$FLAG_SHIFT" ;;
    --ref|--ref=*) flag_value "$@"; REF="$FLAG_VALUE"; shift "$FLAG_SHIFT" ;;
    --repo-dir|--repo-dir=*) flag_value "$@"; REPO_DIR="$FLAG_VALUE"; shift "$FLAG_SHIFT" ;;
    --python|--python=*) flag_value "$@"; PYTHON_VERSION="$FLAG_VALUE"; shift "$FLAG_SHIFT" ;;
    --extras|--extras=*) flag_value "$@"; EXTRAS="$FLAG_VALUE"; shift "$FLAG_SHIFT" ;;
    --no-check) CHECK=0; shift ;;
    *) parse_common_flag "$@"; shift "$FLAG_SHIFT" ;;
  esac
done

require_target
[[ -z "$REF" || -n "$REPO_URL" ]] || die "--ref needs --repo-url"
gcloud_target_flags

# The remote commands (run by the login shell of every worker, from $HOME).
if [[ -n "$REPO_URL" ]]; then
  fetch="rm -rf $REMOTE_REPO && git clone -q $(quote_arg "$REPO_URL") $REMOTE_REPO"
  [[ -n "$REF" ]] && fetch+=" && git -C $REMOTE_REPO checkout -q $(quote_arg "$REF")"
else
  [[ -f "$REPO_DIR/setup.py" ]] || die "--repo-dir $REPO_DIR: no setup.py there"
  TARBALL="${TMPDIR:-/tmp}/sjjax-src-$TPU_NAME.tgz"
  fetch="rm -rf $REMOTE_REPO && mkdir -p $REMOTE_REPO && tar -xzf \$HOME/sjjax-src.tgz -C $REMOTE_REPO"
fi
install="(command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh)"
install+=" && export PATH=\$HOME/.local/bin:\$PATH"
install+=" && uv venv -q --seed --allow-existing --python $(quote_arg "$PYTHON_VERSION") $REMOTE_VENV"
install+=" && cd $REMOTE_REPO && $REMOTE_VENV/bin/pip install -q -e $(quote_arg ".[$EXTRAS]")"
remote="set -eo pipefail; $fetch && $install"
if [[ "$CHECK" == 1 ]]; then
  remote+=" && $REMOTE_VENV/bin/python -c 'import jax; print(\"worker\", jax.process_index(), \"local devices\", jax.local_device_count(), \"of\", jax.device_count())'"
fi

if [[ -z "$REPO_URL" ]]; then
  run tar -czf "$TARBALL" -C "$REPO_DIR" --exclude=.git --exclude=.venv --exclude=venv \
    --exclude=runs --exclude=__pycache__ --exclude='*.egg-info' --exclude=.pytest_cache \
    --exclude=.cache --exclude=build --exclude=dist .
  run gcloud compute tpus tpu-vm scp "$TARBALL" "$TPU_NAME:sjjax-src.tgz" --worker=all \
    "${GCLOUD_TARGET[@]}"
fi
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --worker=all "${GCLOUD_TARGET[@]}" \
  --command="$remote"
if [[ -z "$REPO_URL" ]]; then
  run rm -f "$TARBALL"
fi
