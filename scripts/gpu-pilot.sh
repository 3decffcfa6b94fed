#!/usr/bin/env bash
# The GPU pilot study (studies/gpu-pilot.toml) on the lent GPU machine, from the repo root, after
# `just gpu-build` staged .gpu/ here:
#   device run, carry [".gpu"], timeout_s 540, command: bash .gpu/pilot.sh
# About eight minutes of one H200: five arms, three seeds, budgets 0.5 and 1, four runs at a
# time, HellaSwag (when .gpu/hellaswag_val.jsonl was staged) at the end of every run. The logs
# come back as $OUT/gpu-pilot-runs.tar.gz; here, unpack it into reports/gpu-pilot/runs and
# `just report --runs reports/gpu-pilot/runs --out reports/gpu-pilot` draws Figure 1 and the rest.
# A run cut short by the timeout is resumed by running this again on a warm machine.
# Dry run here on the CPU (the same design shrunk to 40 steps of width 32, to check the plumbing,
# HellaSwag and Figure 1 included; 4.5 minutes measured on 2 cores):
#   just gpu-build && DEVICE=cpu bash .gpu/pilot.sh
set -uo pipefail
device=${DEVICE:-cuda}
torch_lib=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
export LD_LIBRARY_PATH=.gpu:$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
out=${OUT:-.gpu/out}
runs=.gpu/gpu-pilot/runs
mkdir -p "$out" "$runs" data
# The design reads data/corpus-bytes: the shards gpu-build staged.
[ -d data/corpus-bytes ] || ln -s "$PWD/.gpu/corpus-bytes" data/corpus-bytes
design=studies/gpu-pilot.toml
jobs=4
if [ "$device" != cuda ]; then
  # Same design, a few steps of a smaller model on the CPU.
  design=.gpu/gpu-pilot-dry.toml
  sed -e 's/"steps=500"/"steps=40"/' -e 's/"model.d_model=128"/"model.d_model=32"/' -e 's/"micro_batch=64"/"micro_batch=4"/' \
      -e 's/"tokens_per_step=32768"/"tokens_per_step=4096"/' -e 's/"val_tokens=262144"/"val_tokens=4096"/' \
      -e 's/"bf16=true"/"bf16=false"/' -e 's/"hellaswag_limit=1000"/"hellaswag_limit=20"/' \
      -e 's/"warmup_steps=25"/"warmup_steps=4"/' -e 's/"val_every=250"/"val_every=20"/' \
      -e 's/^device = "cuda"/device = "cpu"/' studies/gpu-pilot.toml > "$design"
  jobs=2
fi
hellaswag=()
[ -f .gpu/hellaswag_val.jsonl ] && hellaswag=(--hellaswag .gpu/hellaswag_val.jsonl)
{ nvidia-smi -L || echo "no nvidia-smi"; } | tee "$out/device.txt"
start=$(date +%s)
timeout 500 .gpu/train study --design "$design" --runs-dir "$runs" --jobs "$jobs" "${hellaswag[@]}" 2>&1 | tee "$out/pilot.log"
echo "pilot: exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s" | tee -a "$out/pilot.log"
# A timeout stops the parent; its workers go with it.
pkill -f "train study --design $design" || true
# Logs only: checkpoints stay behind.
tar -czf "$out/gpu-pilot-runs.tar.gz" --exclude=checkpoints --exclude=.claims --exclude=.lock -C .gpu/gpu-pilot runs
ls -la "$out"
