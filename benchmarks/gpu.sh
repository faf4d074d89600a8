#!/usr/bin/env bash
# Every GPU figure of spikescope in one run on one CUDA device, under 8 minutes (docs/performance.md).
#
#   benchmarks/gpu.sh [--dry-run] [OUT_DIR]
#
# OUT_DIR (default: benchmarks/results/gpu-<date>) gets one JSON per step (device, versions, every figure, or the
# error of a failed step) and summary.md (the table printed at the end): 8 files, the most a GPU machine hands back.
# Logs and the benchmarks' raw outputs go to GPU_WORK (default: a new temporary folder, printed at the end).
# Each step has a time budget and the whole run a deadline; a failing or slow step is recorded and the next one runs.
# --dry-run: the same steps at tiny shapes on the CPU (Triton under its interpreter), to prove the script and its JSON.
#
# Environment:
#   PYTHON=...     the interpreter (default: .venv/bin/python if present, else python3)
#   SJ_WHEELS=DIR  a folder of wheels installed with --no-deps into a temporary folder for this run, so SpikingJelly
#                  2.0 runs side by side with our neurons: spikingjelly-2.0.0-py3-none-any.whl and loguru-*.whl.
#                  Fetch them here with
#                    python3 -m pip download --no-deps -d .whl spikingjelly==2.0.0 loguru
#                  ("echo /.whl/ >> .git/info/exclude"), carry .whl to the GPU machine and pass SJ_WHEELS=.whl.
set -u -o pipefail

DRY=0
OUT=""
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        -*) echo "gpu.sh: error: unknown option $arg (use --dry-run or OUT_DIR)" >&2; exit 2 ;;
        *) [ -z "$OUT" ] || { echo "gpu.sh: error: one OUT_DIR only, got '$OUT' and '$arg'" >&2; exit 2; }
           OUT="$arg" ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 2
PY="${PYTHON:-}"
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python3; }
OUT="${OUT:-benchmarks/results/gpu-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT" || exit 2
if ls "$OUT"/*.json >/dev/null 2>&1; then
    echo "gpu.sh: error: $OUT already holds results; give an empty or new OUT_DIR" >&2
    exit 2
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ -n "${SJ_WHEELS:-}" ]; then
    SITE="$(mktemp -d)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$SJ_WHEELS"/*.whl \
        && export PYTHONPATH="$PYTHONPATH:$SITE" \
        || echo "gpu.sh: SJ_WHEELS=$SJ_WHEELS did not install; SpikingJelly is left out" >&2
fi

if [ "$DRY" = 1 ]; then
    DEV=cpu TOTAL=300  # a safety net: on an idle 2-core box the dry run takes about a minute
    export TRITON_INTERPRET=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
else
    DEV=cuda TOTAL=450
    unset TRITON_INTERPRET
    "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
        || { echo "gpu.sh: error: no CUDA device visible to $PY; run with --dry-run on a CPU" >&2; exit 2; }
fi
WORK="${GPU_WORK:-$(mktemp -d)}"
mkdir -p "$WORK" || exit 2
DEADLINE=$(( $(date +%s) + TOTAL ))
"$PY" benchmarks/gpu_step.py env "$WORK" || exit 2

# step NAME BUDGET_S RESULT_FILE CMD...: run CMD under min(budget, deadline), record NAME.json whatever happens
step() {
    local name=$1 budget=$2 result=$3
    shift 3
    "$PY" benchmarks/gpu_step.py run "$OUT" "$WORK" "$name" "$budget" "$DEADLINE" "$result" -- "$@"
}

# --- the steps: every size and flag is here, in one place ---------------------------------------------------------
if [ "$DRY" = 1 ]; then
    NEURONS=(--shape 2,2,4,4,4 --reps 1 --warmup 0 --device cpu)
    TINY_SDT=(--set "embed_dims=[8,16,16,16]")
    SDT=(--batch 2 --size 32 "${TINY_SDT[@]}" --warmup 1 --steps 1)
    VGG=(--batch 2 --size 32 --set timesteps=4 --set "widths=[16,16,16,16,16]" --set "hidden=[16,16]"
         --warmup 1 --steps 1)
    ERF=(--size 32 --n 2 --batch 2 "${TINY_SDT[@]}" --layers stage3.blocks.0.attn.proj stage4.blocks.1.attn.proj)
    DENSE=(--dry-run)
    TRITON=(--dry-run)
else
    NEURONS=(--shape 4,64,128,56,56 --reps 20 --warmup 3 --device cuda)
    SDT=(--batch 64 --warmup 3 --steps 10)
    VGG=(--batch 16 --warmup 3 --steps 10)
    ERF=(--size 224 --n 60 --batch 30)
    DENSE=()
    TRITON=(--reps 20)
fi
NEURON_BACKENDS="${NEURON_BACKENDS:-torch,fused,triton,spikingjelly}"

mapfile -t GPU_TESTS < <(grep -l "mark.gpu" tests/test_*.py)
step gpu_tests 75 "$WORK/gpu_tests.xml" \
    "$PY" -m pytest -m gpu -q -p no:cacheprovider --junitxml="$WORK/gpu_tests.xml" "${GPU_TESTS[@]}"
step neurons 90 "$WORK/neurons.json" \
    "$PY" benchmarks/neurons.py "${NEURONS[@]}" --dtype fp32,bf16 --backends "$NEURON_BACKENDS" \
    --json "$WORK/neurons.json"
step triton_kernels 60 "$WORK/triton_kernels.json" \
    "$PY" benchmarks/triton_kernels.py "${TRITON[@]}" --device "$DEV" --json "$WORK/triton_kernels.json"
step erf_spatial 90 "$WORK/erf_spatial.json" \
    "$PY" benchmarks/erf.py --model sdt_v3_s --set mixer=srb "${ERF[@]}" --device "$DEV" \
    --json "$WORK/erf_spatial.json"
step train_sma_vgg8 70 "$WORK/train_sma_vgg8.json" \
    "$PY" benchmarks/models.py --model sma_vgg8_dvs128 "${VGG[@]}" --amp fp16 --vary azo=true,false \
    --neuron-backend auto,torch --device "$DEV" --json "$WORK/train_sma_vgg8.json"
step train_sdt_v3_s 90 "$WORK/train_sdt_v3_s.json" \
    "$PY" benchmarks/models.py --model sdt_v3_s "${SDT[@]}" --amp bf16 --vary mixer=conv,mlpixer,srb \
    --neuron-backend auto,torch --device "$DEV" --json "$WORK/train_sdt_v3_s.json"
if [ -f benchmarks/dense.py ]; then
    step dense 45 "$WORK/dense.json" \
        "$PY" benchmarks/dense.py "${DENSE[@]}" --task all --device "$DEV" --json "$WORK/dense.json"
else
    "$PY" benchmarks/gpu_step.py skip "$OUT" "$WORK" dense "benchmarks/dense.py does not exist in this tree"
fi

echo
"$PY" benchmarks/gpu_step.py summary "$OUT"
echo "results in $OUT; logs in $WORK"
