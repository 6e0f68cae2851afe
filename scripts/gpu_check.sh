#!/usr/bin/env bash
# The checks a lent GPU machine is for, as one script (docs/bench.md, "Figures on a GPU"):
# the conformance kit on CUDA, `ganzoo bench` of the stylegan2 hour recipe at 32 px (bf16
# autocast, channels_last, fp32, larger batches, torch.compile) against an 8192² bf16 matmul
# peak, and a timed `ganzoo train` of that recipe whose export comes back for evaluation.
#
#   GANZOO_DATA=DIR bash scripts/gpu_check.sh OUTDIR
#
# DIR holds fashion-mnist/*-idx?-ubyte.gz (the machine has no network). Environment knobs
# for a dry run elsewhere: DEVICE (cuda), STEPS (timed bench steps, 50), TRAIN_SECONDS (150),
# INSTALL (1: pip-install ganzoo and the built-in plugins from this checkout, offline).
set -u
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-50}
TRAIN_SECONDS=${TRAIN_SECONDS:-150}
RECIPE=stylegan2-fashion-mnist-hour
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
S="$OUT/summary.txt"
say() { echo "== $*" | tee -a "$S"; }

if [ "${INSTALL:-1}" = 1 ]; then
    # the machine has torch, timm, pluggy, click and safetensors but no network: no deps, no index
    args=(-e .)
    for p in plugins/*/; do args+=(-e "$p"); done
    python3 -m pip install -q --no-deps --no-build-isolation --no-index "${args[@]}" 2>&1 | tail -3
    rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || { say "install failed (rc $rc): stopping"; exit 1; }
fi
say "machine"
{ nvidia-smi -L 2>/dev/null; python3 -c "import torch, ganzoo; print('torch', torch.__version__, 'ganzoo', ganzoo.__version__)"; ganzoo list architectures; } 2>&1 | tee -a "$S"

say "conformance kit on $DEVICE"
GANZOO_TEST_DEVICE=$DEVICE timeout 300 python3 -m pytest -q -p no:cacheprovider -k conformance \
    tests/test_architectures.py tests/test_modern_architectures.py 2>&1 | tail -4 | tee -a "$S"
say "conformance rc ${PIPESTATUS[0]}"

bench() {  # bench LABEL [FLAGS]: one row of the table, its JSON appended to bench.jsonl
    local label=$1; shift
    say "bench $label: $*"
    local line
    line=$(timeout 240 ganzoo bench --recipe $RECIPE --image-size 32 --device "$DEVICE" --steps "$STEPS" \
        --rounds 3 --warmup 5 --flop-steps 16 --peak-size 8192 --json "$@" 2>>"$OUT/bench.err")
    if [ -n "$line" ]; then
        echo "$line" >> "$OUT/bench.jsonl"
        echo "$line" | python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"  batch {r['batch_size']} amp {r['amp']} {r['memory_format']} compile {r['compile']}: {r['s_per_step']*1e3:.2f} ms/step, {r['images_per_s']:.0f} images/s, {r['gflop_per_step']:.2f} GFLOP/step, {r['gflop_per_s']/1e3:.3g} TFLOP/s = {100*r['fraction_of_peak']:.2f}% of {r['peak_dtype']} {r['peak_gflop_per_s']/1e3:.3g} TFLOP/s\")" | tee -a "$S"
    else
        echo "  failed (bench.err)" | tee -a "$S"
    fi
}
bench "the recipe (batch 32, bf16 autocast, channels_last)"
bench "fp32 (TF32 allowed as torch defaults)" --no-amp
bench "batch 256" --batch-size 256
bench "batch 1024" --batch-size 1024

say "train: ganzoo train --recipe $RECIPE --image-size 32 --device $DEVICE --max-seconds $TRAIN_SECONDS"
rm -rf /tmp/gpu-run
timeout $((TRAIN_SECONDS + 240)) ganzoo train --recipe $RECIPE --image-size 32 --device "$DEVICE" \
    --max-seconds "$TRAIN_SECONDS" --no-progress --sample-every 100000 --out /tmp/gpu-run > "$OUT/train.log" 2>&1
echo "  rc $?; $(grep -c '^step' "$OUT/train.log") log lines; last: $(grep '^step' "$OUT/train.log" | tail -1)" | tee -a "$S"
cp /tmp/gpu-run/export/generator.safetensors /tmp/gpu-run/export/config.json /tmp/gpu-run/metrics.jsonl "$OUT/" 2>/dev/null

bench "torch.compile (default mode)" --compile
say "done"
