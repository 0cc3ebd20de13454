#!/usr/bin/env bash
# Everything a GPU machine must run for this project (issue 31), in one command, from the
# repository's root, with the machine's own python3 (torch preinstalled; no `make setup`):
#
#   bash scripts/gpu_check.sh OUT              on one H100: under 8 minutes, results into OUT
#   bash scripts/gpu_check.sh --dry-run OUT    the same steps and command lines, tiny sizes, on CPU
#   bash scripts/gpu_check.sh --prepare        here (network): the Ray/MLflow wheels for step 9
#
# Steps, in order of value, each under its own time limit in seconds (`timeout`); a step that fails
# or runs out of time does not stop the next:
#   1 env 10   2 smoke 60   3 fallback 20   4 tests 80   5 bench 130   6 losses 55
#   7 packing 60   8 ddp 25   9 orchestrator 30                      sum: 470 s
# and the whole run stops starting steps at 470 s (a step gets what is left if that is less), so it
# ends within 8 minutes, bookkeeping and the 3 s grace of a killed step included.
#
# OUT gets at most 8 files, since the device tool brings back no more (and nothing deeper or oddly
# named): results.md (a section per step), steps.jsonl (a record per step), log.txt (every command's
# whole output, as it runs), smoke.json, bench.json, losses.json. Each step's section and record
# are appended and synced before the next step starts: a machine lost halfway still returns what
# was done. Compile caches and scratch files live beside OUT (gpu_check_cache/, gpu_check_work/),
# so a second run on the same machine reuses the compiled kernels.
set -u

SELF=$(realpath "${BASH_SOURCE[0]}")
ROOT=$(dirname "$(dirname "$SELF")")
STEPS=(env smoke fallback tests bench losses packing ddp orchestrator)
declare -A LIMIT=([env]=10 [smoke]=60 [fallback]=20 [tests]=80 [bench]=130 [losses]=55 [packing]=60 [ddp]=25 [orchestrator]=30)
declare -A TITLE=(
  [env]="environment: nvidia-smi, torch/CUDA/cuDNN versions, free GPU memory"
  [smoke]="smoke: a few steps of every fast configuration at 64x64 (capture and compile work at all)"
  [fallback]="fallback: an injected compile, capture or replay failure goes on eagerly"
  [tests]="the GPU tests (pytest -m gpu)"
  [bench]="benchmark: 256x256, 9 blocks, batch 1 and 8, against this run's eager fp32 batch 1, with the loader"
  [losses]="loss curves: --loss-check 200 at batch 1 against eager fp32"
  [packing]="trial packing: k single-worker trainings at once on the one GPU, aggregate pairs/s"
  [ddp]="one-GPU DDP against no DDP"
  [orchestrator]="one end-to-end orchestrator run of a tiny manifest (Ray, MLflow)"
)
TOTAL_LIMIT=470
GRACE=3               # seconds between a step's TERM and its KILL
SKIP=77               # a step's exit status for "skipped", after a line "SKIP: why"
WHEELS=.gpu_wheels    # ignored by git; travels with the device tool's `carry: [".gpu_wheels"]`
WHEEL_BUDGET_MIB=45   # of the 64 MiB that travel, leaving room for the tree (about 1.4 MiB)

usage() {
  cat <<EOF
usage: bash scripts/gpu_check.sh [--dry-run] [--only STEP,...] OUT
       bash scripts/gpu_check.sh --prepare

Run the project's GPU checks in order of value, each under its own time limit, writing results
to the folder OUT as it goes (results.md, steps.jsonl, log.txt and the benchmarks' JSON files):
$(for s in "${!STEPS[@]}"; do printf '  %d %-13s %4s s  %s\n' $((s + 1)) "${STEPS[s]}" "${LIMIT[${STEPS[s]}]}" "${TITLE[${STEPS[s]}]}"; done)
The run starts no step after $TOTAL_LIMIT s.

  --dry-run      the same steps at tiny sizes on CPU (what needs CUDA says so and is skipped),
                 each step limited to 300 s: it checks the command lines, not the times
  --only S,...   run only these steps (e.g. to rerun what ran out of time: compile caches stay)
  --prepare      download the wheels of Ray and MLflow that the GPU machine lacks into $WHEELS/,
                 for step 9 (needs the network; run here, not on the GPU machine)

Environment: PYTHON (default python3), GPU_CHECK_LIMIT_<step>=SECONDS to change a step's limit,
GPU_CHECK_INJECT="step=fail,step=hang" to make steps fail or hang (the tests' hook).
EOF
}

# -- the steps: each runs in its own process (`bash SELF --step NAME`) under `timeout` -----------
# Sizes per mode: the GPU's are the issue's; the dry run's are the smallest that exercise the same
# command lines on 2 CPU cores.
set_sizes() {
  if [ "$MODE" = gpu ]; then
    DEVICE=(--device cuda)
    TRAIN_DEVICE=cuda
    SMOKE=(--size 64 --blocks 2)
    BIG=(--size 256 --blocks 9)
    ITERS=(--iters 20 --warmup 3)
    BATCHES=1,8
    LOADER_WORKERS=8
    LOSS_ITERS=200
    # auto's choice at batch 1, whose kernels step 5 compiled; the tests step compares the other
    # batch-1 configurations at 64x64
    LOSS_CONFIGS=compiled-graphs-bf16-cl
    PACK_KS=(1 2 4)
    PACK_DATA="synthetic://colorshift?size=256&n_train=48&n_test=2&seed=0"
    # compile off: k processes compiling at once would spend the step's limit; the captured
    # bf16 step (auto's other choices at batch 1) is what shows whether the GPU has room
    PACK_TRAIN=(--netG resnet_9blocks --compile none --num_threads 2)
    RESOURCES="{workers: 1, gpus_per_worker: 1, cpus_per_worker: 4}"
    # the smoke step's networks: the trial reuses its compiled kernels
    ORCH_TRAIN="{netG: resnet_2blocks, load_size: 64, crop_size: 64, n_epochs: 2, n_epochs_decay: 0, eval_freq: 1, eval_metrics: 'l1,psnr'}"
    ORCH_DATA="synthetic://stripes?size=64&n_train=32&n_test=4&seed=0"
  else
    DEVICE=(--device cpu --threads 1)
    TRAIN_DEVICE=cpu
    SMOKE=(--size 32 --blocks 1 --ngf 8 --ndf 8)
    BIG=(--size 32 --blocks 1 --ngf 8 --ndf 8)
    ITERS=(--iters 2 --warmup 1)
    BATCHES=1,2
    LOADER_WORKERS=1
    LOSS_ITERS=8
    LOSS_CONFIGS=eager-fp32-cl
    PACK_KS=(1 2)
    PACK_DATA="synthetic://colorshift?size=32&n_train=8&n_test=2&seed=0"
    PACK_TRAIN=(--netG resnet_1blocks --ngf 8 --ndf 8 --load_size 32 --crop_size 32 --num_threads 0)
    RESOURCES="{workers: 1, cpus_per_worker: 1}"
    ORCH_TRAIN="{netG: resnet_1blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, n_epochs: 1, n_epochs_decay: 0, num_threads: 0, eval_freq: 1, eval_metrics: 'l1,psnr'}"
    ORCH_DATA="synthetic://stripes?size=32&n_train=8&n_test=2&seed=0"
  fi
}

# Print a command (quoted, ready to paste), then run it: the results show exactly what ran.
x() {
  echo "+ $(printf '%q ' "$@")"
  "$@"
}

skip() {
  echo "SKIP: $*"
  exit "$SKIP"
}

step_env() {
  echo "host: $(uname -n), $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2 " GiB memory, " $7 " GiB available"}'), $(df -h . | awk 'NR == 2 {print $4 " disk free"}')"
  if command -v nvidia-smi >/dev/null; then
    x nvidia-smi
    x nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,memory.free,clocks.max.sm --format=csv
  else
    echo "nvidia-smi: not on this machine"
  fi
  if [ "$MODE" = gpu ]; then
    x "$PYTHON" scripts/gpu_check.py env --need-cuda
  else
    x "$PYTHON" scripts/gpu_check.py env
  fi
}

step_smoke() {
  x "$PYTHON" -m cyclegan bench "${DEVICE[@]}" "${SMOKE[@]}" --batch 1 --iters 5 --warmup 2 --json "$OUT/smoke.json"
}

step_fallback() {
  x "$PYTHON" scripts/gpu_check.py fallback "${DEVICE[@]}" "${SMOKE[@]}"
}

step_tests() {
  # Only the files that hold GPU tests: the others import Ray, MLflow or moto, which the GPU machine
  # lacks. test_bench's target test is also `slow` (a 256x256 benchmark): step 5 measures that.
  local files
  mapfile -t files < <(grep -rl 'pytest.mark.gpu' tests --include='test_*.py')
  [ "${#files[@]}" -gt 0 ] || skip "no test file is marked gpu"
  "$PYTHON" -c 'import pytest, pytest_timeout' 2>/dev/null || skip "pytest or pytest-timeout is not installed for $PYTHON"
  x "$PYTHON" -m pytest -p no:cacheprovider -q -m "gpu and not slow" --timeout "$(( STEP_LIMIT > 10 ? STEP_LIMIT - 5 : STEP_LIMIT ))" "${files[@]}"
}

step_bench() {
  x "$PYTHON" -m cyclegan bench "${DEVICE[@]}" "${BIG[@]}" --batch "$BATCHES" "${ITERS[@]}" \
    --loader-workers "$LOADER_WORKERS" --json "$OUT/bench.json"
}

step_losses() {
  x "$PYTHON" -m cyclegan bench "${DEVICE[@]}" "${BIG[@]}" --batch 1 --iters 5 --warmup 2 \
    --configs "$LOSS_CONFIGS" --loss-check "$LOSS_ITERS" --json "$OUT/losses.json"
}

step_packing() {
  # k trainings start together; each one's last epoch (the first pays for start-up and capture)
  # overlaps the others', and the sum of their pairs/s is what the GPU delivers to k trials.
  local runs=$WORK/packing k i status=0 pids train
  rm -rf "$runs"
  for k in "${PACK_KS[@]}"; do
    pids=()
    for i in $(seq 1 "$k"); do
      train=("$PYTHON" -m cyclegan train --dataroot "$PACK_DATA" --checkpoints_dir "$runs" --name "k${k}_$i"
        --device "$TRAIN_DEVICE" "${PACK_TRAIN[@]}" --n_epochs 2 --n_epochs_decay 0 --n_samples 0
        --print_freq 1000 --save_epoch_freq 100)
      echo "+ $(printf '%q ' "${train[@]}")> $runs.k${k}_$i.log 2>&1 &"
      "${train[@]}" > "$runs.k${k}_$i.log" 2>&1 &
      pids+=($!)
    done
    for i in "${!pids[@]}"; do
      if ! wait "${pids[i]}"; then
        echo "k=$k, run $((i + 1)) failed; the end of its output:"
        tail -n 15 "$runs.k${k}_$((i + 1)).log"
        status=1
      fi
    done
    x "$PYTHON" scripts/gpu_check.py packing "$runs" --k "$k" || status=1
  done
  return "$status"
}

step_ddp() {
  x "$PYTHON" scripts/gpu_check.py ddp "${DEVICE[@]}" "${BIG[@]}" "${ITERS[@]}"
}

step_orchestrator() {
  # Ray and MLflow: installed here (the dry run's venv), else from carried wheels, else skipped.
  if ! "$PYTHON" -c 'import ray, mlflow' 2>/dev/null; then
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
      x "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$WHEELS"/*.whl \
        || skip "the wheels in $WHEELS/ did not install"
      export PYTHONPATH=$WORK/site
      "$PYTHON" -c 'import ray, mlflow' || skip "Ray or MLflow does not import from the wheels in $WHEELS/"
    elif [ -f "$WHEELS/TOO_LARGE" ]; then
      skip "$(cat "$WHEELS/TOO_LARGE")"
    else
      skip "Ray and MLflow are not installed and no wheels came in $WHEELS/ (run 'bash scripts/gpu_check.sh --prepare' there and carry $WHEELS)"
    fi
  fi
  local dir=$WORK/orchestrator
  rm -rf "$dir" && mkdir -p "$dir"
  cat > "$dir/tiny.yaml" <<EOF
name: gpu-check
storage: $dir/runs
tracking: {uri: "sqlite:///$dir/mlflow.db"}
defaults:
  train: $ORCH_TRAIN
  resources: $RESOURCES
search: {num_samples: 1, metric: psnr}
tasks:
  - {name: stripes, data: "$ORCH_DATA"}
EOF
  cat "$dir/tiny.yaml"
  x "$PYTHON" -m orchestrator run "$dir/tiny.yaml" --results-dir "$dir/results"
  local status=$?
  [ "$status" -eq 0 ] || tail -n 40 "$dir/results/gpu-check.log" 2>/dev/null
  return "$status"
}

run_one_step() {
  local name=$1 injected
  injected=$(tr ',' '\n' <<<"${GPU_CHECK_INJECT:-}" | sed -n "s/^$name=//p")
  case "$injected" in
    fail) echo "injected failure (GPU_CHECK_INJECT)"; exit 3 ;;
    hang) echo "injected hang (GPU_CHECK_INJECT)"; sleep 100000; exit 3 ;;
  esac
  set_sizes
  cd "$ROOT" && "step_$name"
}

# -- the run: each step under its limit, then its section, record and log synced to OUT ---------
record_step() {  # NUMBER NAME STATUS RC SECONDS LIMIT NOTE
  local number=$1 name=$2 status=$3 rc=$4 seconds=$5 limit=$6 note=$7 output=$WORK/$2.out
  {
    printf '\n## %d. %s: %s (%d s, limit %d s)\n\n%s\n\n' "$number" "$name" "$status" "$seconds" "$limit" "${TITLE[$name]}"
    [ -n "$note" ] && printf '%s\n\n' "$note"
    if grep -q '^+ ' "$output"; then
      printf 'Commands:\n\n```\n'; grep '^+ ' "$output" | cut -c3-; printf '```\n\n'
    fi
    # the output's end: tables and summaries come last; progress bars' carriage returns become lines
    printf 'Output (last 60 lines; all of it in log.txt):\n\n```\n'
    tr '\r' '\n' < "$output" | grep -v '^RESULT \|^+ \|^\s*$' | tail -n 60
    printf '```\n'
  } >> "$OUT/results.md"
  "$PYTHON" "$ROOT/scripts/gpu_check.py" record --out "$OUT" --output "$output" --step "$number" --name "$name" \
    --title "${TITLE[$name]}" --status "$status" --rc "$rc" --seconds "$seconds" --limit "$limit" --note "$note" \
    || echo "{\"step\": $number, \"name\": \"$name\", \"status\": \"$status\", \"rc\": $rc}" >> "$OUT/steps.jsonl"
  sync "$OUT"/* 2>/dev/null || sync
}

run_steps() {
  local started number name limit override left begin offset rc seconds status note
  started=$(date +%s)
  for number in "${!STEPS[@]}"; do
    name=${STEPS[number]}
    number=$((number + 1))
    [[ ",$ONLY," == *",$name,"* || -z "$ONLY" ]] || continue
    override=GPU_CHECK_LIMIT_$name
    limit=${!override:-${LIMIT[$name]}}
    left=$((started + TOTAL_LIMIT - $(date +%s)))
    [ "$left" -lt "$limit" ] && limit=$left
    printf '\n===== %d. %s: %s (limit %d s) =====\n' "$number" "$name" "${TITLE[$name]}" "$limit" >> "$OUT/log.txt"
    echo "$(date +%T) step $number, $name (limit $limit s)"
    begin=$(date +%s)
    offset=$(stat -c %s "$OUT/log.txt")
    if [ "$limit" -le 0 ]; then
      echo "SKIP: no time left of the run's $TOTAL_LIMIT s" >> "$OUT/log.txt"
      rc=$SKIP
    else
      # Straight into log.txt, no pipe: a process that outlives the step's kill cannot hold the run up.
      STEP_LIMIT=$limit timeout -k "$GRACE" "$limit" bash "$SELF" --step "$name" >> "$OUT/log.txt" 2>&1 < /dev/null
      rc=$?
    fi
    tail -c +$((offset + 1)) "$OUT/log.txt" > "$WORK/$name.out"
    seconds=$(($(date +%s) - begin))
    note=""
    case $rc in
      0) status=ok ;;
      "$SKIP") status=skipped; note=$(grep -m1 '^SKIP: ' "$WORK/$name.out" | cut -c7-) ;;
      124 | 137) status=timeout; note="stopped at its limit of $limit s" ;;
      *) status=failed; note="exit status $rc; last line: $(tr '\r' '\n' < "$WORK/$name.out" | grep -v '^RESULT \|^\s*$' | tail -n 1)" ;;
    esac
    record_step "$number" "$name" "$status" "$rc" "$seconds" "$limit" "$note"
    echo "$(date +%T) step $number, $name: $status${note:+ ($note)}"
  done
  echo "done in $(($(date +%s) - started)) s; results in $OUT"
}

# -- --prepare: the wheels of what the GPU machine lacks ----------------------------------------
prepare() {
  cd "$ROOT" || exit 1
  local pip=("$PYTHON" -m pip) tmp platforms size tree largest
  # What the orchestrator imports for a run (ray[default] brings `ray job submit`'s dashboard deps).
  local wanted=("ray[default,train,tune]==2.60.0" "mlflow==3.17.2" boto3 pydantic)
  platforms=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
  tmp=$(mktemp -d)
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  echo "resolving ${wanted[*]} for CPython 3.12 on x86-64 Linux"
  "${pip[@]}" install --quiet --dry-run --ignore-installed --report "$tmp/report.json" --target "$tmp/target" \
    "${platforms[@]}" "${wanted[@]}" 2> >(grep -v 'is ignored' >&2) || { echo "pip could not resolve them"; exit 1; }
  # Only what the GPU machine lacks (scripts/gpu_machine_packages.txt: its image's package list).
  "$PYTHON" - "$tmp/report.json" scripts/gpu_machine_packages.txt > "$tmp/needed.txt" <<'EOF'
import json, re, sys
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
there = {norm(line.strip()) for line in open(sys.argv[2]) if line.strip() and not line.startswith("#")}
for item in json.load(open(sys.argv[1]))["install"]:
    if norm(item["metadata"]["name"]) not in there:
        print(f"{item['metadata']['name']}=={item['metadata']['version']}")
EOF
  echo "$(wc -l < "$tmp/needed.txt") packages the GPU machine lacks: $(tr '\n' ' ' < "$tmp/needed.txt")"
  "${pip[@]}" download --quiet --no-deps "${platforms[@]}" -d "$WHEELS" -r "$tmp/needed.txt" 2> >(grep -v 'is ignored' >&2) \
    || { echo "pip could not download them"; exit 1; }
  rm -rf "$tmp"
  size=$(du -cb "$WHEELS"/*.whl | tail -n 1 | cut -f1)
  tree=$(git ls-files -z | xargs -0 du -cb | tail -n 1 | cut -f1)
  largest=$(find "$WHEELS" -name '*.whl' -printf '%s %f\n' | sort -rn | head -n 3 | awk '{printf "%s%s %d MiB", (NR > 1 ? ", " : ""), $2, $1 / 1048576}')
  echo "wheels: $((size / 1048576)) MiB ($size bytes; the largest: $largest)"
  echo "the tracked tree: $((tree / 1048576)) MiB ($tree bytes); what travels must stay under 64 MiB"
  if [ "$size" -gt $((WHEEL_BUDGET_MIB * 1048576)) ]; then
    rm -f "$WHEELS"/*.whl
    # Carried instead of the wheels, so that step 9 says why it cannot run.
    echo "the Ray and MLflow wheels the GPU machine lacks measured $((size / 1048576)) MiB on $(date +%F) (the largest: $largest), over the $WHEEL_BUDGET_MIB MiB that may travel beside the tree: no end-to-end orchestrator run on the GPU machine" \
      > "$WHEELS/TOO_LARGE"
    cat "$WHEELS/TOO_LARGE"
    exit 1
  fi
  echo "fits: carry $WHEELS with the device tool (carry: [\"$WHEELS\"])"
}

# -- main -----------------------------------------------------------------------------------------
if [ "${1:-}" = --step ]; then  # internal: one step, in its own process under `timeout` (MODE, OUT, WORK, PYTHON exported)
  run_one_step "$2"
  exit
fi
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
MODE=gpu
ONLY=""
OUT=""
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) MODE=dry ;;
    --only) ONLY=${2:-}; shift ;;
    --prepare) prepare; exit ;;
    -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) OUT=$1 ;;
  esac
  shift
done
[ -n "$OUT" ] || { usage >&2; exit 2; }
if [ "$MODE" = dry ]; then
  # The dry run checks command lines, not times: on 2 busy cores Ray alone can take a minute to start.
  for name in "${STEPS[@]}"; do LIMIT[$name]=300; done
  TOTAL_LIMIT=1800
fi
for name in ${ONLY//,/ }; do
  [ -n "${LIMIT[$name]:-}" ] || { echo "--only: unknown step $name (steps: ${STEPS[*]})" >&2; exit 2; }
done

mkdir -p "$OUT" || exit 1
OUT=$(realpath "$OUT")
CACHE=$(dirname "$OUT")/gpu_check_cache
WORK=$(dirname "$OUT")/gpu_check_work
rm -rf "$WORK"
mkdir -p "$CACHE" "$WORK" || exit 1
rm -f "$OUT"/{results.md,steps.jsonl,log.txt,smoke.json,bench.json,losses.json}
export MODE OUT WORK PYTHON
export TORCHINDUCTOR_CACHE_DIR=$CACHE/inductor TRITON_CACHE_DIR=$CACHE/triton CYCLEGAN_CACHE_DIR=$CACHE/datasets
export RAY_TMPDIR=${RAY_TMPDIR:-/tmp}
cd "$ROOT" || exit 1
printf '# GPU check (%s mode), %s on %s\n\nCommit %s. Limits (s):%s; the run starts no step after %d s.\n' \
  "$MODE" "$(date -u '+%F %T UTC')" "$(uname -n)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  "$(for s in "${STEPS[@]}"; do printf ' %s %s' "$s" "${LIMIT[$s]}"; done)" "$TOTAL_LIMIT" > "$OUT/results.md"
run_steps
