#!/usr/bin/env bash
# One GPU session's measurements, time-boxed: the benchmarks on the card (bench/RESULTS.md,
# "GPU"), then the SmolLM2-135M reproduction (JSFT -> evaluate -> one self-judge
# iteration -> evaluate) with whatever time is left. Run from the repository root:
#
#   OUT=/tmp/gpu_out DEADLINE_S=540 bash bench/gpu_session.sh \
#       [all|bench|reproduce|recipes|setup]
#
# Everything it prints goes to $OUT/log.txt as it happens (so a run stopped at its limit
# still leaves its log); the reproduction's metrics, evaluations and plots (no
# checkpoints) are packed into $OUT/runs.tar.gz at the end. Each step gets its own time
# limit and a failed step does not stop the next.
#
# Where the machine has no network, the Python packages the image lacks can come as
# wheels in .whl/ (installed into /tmp/site), and the SmolLM2 GGUF in pieces
# .asset/pa? (concatenated into $SJJAX_CACHE; see bench/RESULTS.md for how they travel).
set -u
OUT=${OUT:-/tmp/gpu_out}
DEADLINE=${DEADLINE_S:-540}
START=$(date +%s)
mkdir -p "$OUT"
LOG=$OUT/log.txt
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
export SJJAX_CACHE=${SJJAX_CACHE:-/tmp/sjcache}

say() { echo "$*" | tee -a "$LOG"; }
left() { echo $((DEADLINE - ($(date +%s) - START))); }

# step NAME MAX_SECONDS COMMAND...: runs COMMAND under min(MAX_SECONDS, time left - 25 s).
step() {
  local name=$1 max=$2 limit
  shift 2
  limit=$(($(left) - 25))
  ((limit > max)) && limit=$max
  if ((limit < 15)); then say "== $name: skipped, out of time"; return 1; fi
  say "== $name (limit ${limit}s, t=$(($(date +%s) - START))s): $*"
  timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  say "== $name: exit $rc after $(($(date +%s) - START))s"
  return $rc
}

setup() {
  if [ -d .whl ] && [ ! -d /tmp/site ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 || say "wheel install failed"
  fi
  export PYTHONPATH=$PWD
  if [ -d /tmp/site ]; then export PYTHONPATH=/tmp/site:$PWD; fi
  mkdir -p /tmp/sjparts "$SJJAX_CACHE/smollm2"
  [ -d .asset ] && cp -n .asset/* /tmp/sjparts/ 2>/dev/null
  local gguf=$SJJAX_CACHE/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  if [ ! -f "$gguf" ] && [ -f /tmp/sjparts/paa ] && [ -f /tmp/sjparts/pab ]; then
    cat /tmp/sjparts/paa /tmp/sjparts/pab >"$gguf"
    echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $gguf" |
      sha256sum -c - >>"$LOG" 2>&1 || { say "GGUF checksum mismatch"; rm -f "$gguf"; }
  fi
  # bench_judge reads ../shared/data/hh-rlhf/harmless-base-test.jsonl.gz
  if [ -f /tmp/sjparts/harmless-base-test.jsonl.gz ]; then
    mkdir -p ../shared/data/hh-rlhf
    cp -n /tmp/sjparts/harmless-base-test.jsonl.gz ../shared/data/hh-rlhf/
  fi
  [ -f "$gguf" ] && HAVE_SMOLLM2=1 || HAVE_SMOLLM2=0
  say "setup: SmolLM2 present=$HAVE_SMOLLM2, PYTHONPATH=$PYTHONPATH"
}

benchmarks() {
  local j=/tmp/bench_json  # copied into the log at the end ($OUT takes 8 files at most)
  mkdir -p "$j"
  # The figures first (bench/RESULTS.md, "GPU"): the JSFT step of the 1.24B Llama
  # in bf16 at 4 x 2048 without remat (cuDNN flash attention under model.attention=auto,
  # the loss in chunks of 512 positions: `python -m sjjax.plan` puts it at ~42 GiB), MFU
  # and ratio vs PyTorch; sampling at batch 64, 128 new tokens, share of the HBM bound.
  step train_step_llama1b 240 python3 bench/bench_train_step.py --model llama_1b --batch 4 \
    --length 2048 --repeats 5 --attention auto --loss-chunk 512 \
    --json "$j/train_step_llama1b.json"
  step sampling_llama1b_bf16_b64 180 python3 bench/bench_sampling.py --model llama_1b \
    --dtype bfloat16 --batch 64 --new-tokens 128 --repeats 3 \
    --json "$j/sampling_llama1b_bf16_b64.json"
  if ((HAVE_SMOLLM2)); then
    # Self-judgment vs generate(max_new_tokens=1) over both orders.
    step judge_f32 120 python3 bench/bench_judge.py --json "$j/judge_f32.json"
    step model_bf16 120 python3 bench/bench_model.py --dtype bfloat16 --batch 4 --length 512 \
      --json "$j/model_bf16.json"
    step sampling_bf16_b8 120 python3 bench/bench_sampling.py --dtype bfloat16 \
      --json "$j/sampling_bf16_b8.json"
  fi
  for f in "$j"/*.json; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; } >>"$LOG"; done
}

reproduction() {
  ((HAVE_SMOLLM2)) || return
  local r=runs/gpu_smollm2 common
  common=("--config.data.tfds_dir=$r/tfds")
  # 4 epochs at lr 5e-5 left the judgment loss at ln 2 (docs/results.md); on 24 pairs
  # SmolLM2 fitted the judgments only after ~17 epochs at lr 1e-4.
  step jsft 360 python3 -m sjjax.main --config=configs/jsft.py:smollm2 "${common[@]}" \
    --config.run_dir=$r/jsft --config.train.loss_normalization=example \
    --config.data.num_epochs=12 --config.data.batch_size=32 \
    --config.train.learning_rate=1e-4 --config.checkpoint.every_steps=200 || return
  step eval_jsft 150 python3 -m sjjax.main --config=configs/evaluate.py:smollm2 "${common[@]}" \
    --config.model.source=$r/jsft --config.evaluate.label=jsft \
    --config.evaluate.tournament_sizes='(1,4,16)' --config.run_dir=$r/eval/jsft
  step self_judge_1 200 python3 -m sjjax.main --config=configs/self_judge.py:smollm2 \
    "${common[@]}" --config.model.source=$r/jsft --config.run_dir=$r/self_judge_1 || return
  step eval_self_judge_1 150 python3 -m sjjax.main --config=configs/evaluate.py:smollm2 \
    "${common[@]}" --config.model.source=$r/self_judge_1 --config.evaluate.label=self_judge_1 \
    --config.evaluate.tournament_sizes='(1,4,16)' --config.run_dir=$r/eval/self_judge_1
}

# SmolLM2's judge, one variable at a time (configs/smollm2_judge_recipe.py): the
# check judge first, the prototype's recipe, the preset's, the single changes; each JSFT + its
# evaluation (250 steps of 8: 2 CPU cores take 35-60 min a variant).
recipes() {
  ((HAVE_SMOLLM2)) || return
  local v
  for v in solve check prototype preset full eos grouped optimizer example lr4x; do
    step "recipe_$v" 240 python3 -m sjjax.main --config=configs/smollm2_judge_recipe.py:$v &&
      step "recipe_${v}_eval" 180 python3 -m sjjax.main \
        --config=configs/smollm2_judge_recipe.py:$v,evaluate
  done
}

pack() {
  local dirs=()
  for d in runs/gpu_smollm2 runs/smollm2_recipe; do [ -d $d ] && dirs+=("$d"); done
  ((${#dirs[@]})) || return
  find "${dirs[@]}" -path '*/tfds' -prune -o -type f \( -name '*.json' -o -name '*.jsonl' \
    -o -name '*.md' -o -name '*.png' -o -name '*.txt' -o -name '*.py' \) -print |
    grep -v '/checkpoints/' | tar czf "$OUT/runs.tar.gz" -T - 2>>"$LOG"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem \
    --format=csv; python3 -c "import jax; print('jax', jax.__version__, jax.devices())"; } \
  >>"$LOG" 2>&1
setup
case "${1:-all}" in
  setup) python3 -c "import ml_collections, gguf, tensorflow_datasets, grain, tensorboardX, \
sjjax.main, torch; print('imports ok; torch', torch.__version__, torch.cuda.get_device_name())" \
           >>"$LOG" 2>&1 ;;
  all) benchmarks; reproduction; pack ;;
  bench) benchmarks ;;
  reproduce) reproduction; pack ;;
  recipes) recipes; pack ;;
esac
say "done at t=$(($(date +%s) - START))s"
