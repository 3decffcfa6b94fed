#!/usr/bin/env bash
# Runs on the lent GPU machine from the repo root, after `just gpu-build` staged .gpu/ here:
#   device run, carry [".gpu"], timeout_s 480, command: bash .gpu/run.sh
# In one call, so every ratio compares numbers from the same card (about 5 minutes in all), most
# important first:
#   1. our bench: gpt2-124m full step and the 8 phases of a 4-stage schedule (bf16);
#   2. the PyTorch anchor (scripts/anchors/torch_gpt.py), same card, same call;
#   3. our full step again per variant: PyTorch's cross_entropy, other loss chunks, fp32 (+ TF32);
#   4. a CUDA training smoke test: 30 steps, and the same run stopped at 15 and resumed;
#   5. a markdown summary of all of it, printed last and written to $OUT/summary.md.
# Each part has its own timeout and a failure does not stop the others. If the call itself runs out
# of time, the raw files still come back: `python3 scripts/gpu-summary.py <files_at>` makes the table.
# Dry run here on the CPU with a shrunken model (checks the plumbing, not the numbers):
#   DEVICE=cpu EXTRA="--set model.d_model=64 --set model.heads=4 --set model.context=64
#     --set micro_batch=4 --set tokens_per_step=512 --set val_tokens=512" bash .gpu/run.sh
set -uo pipefail
device=${DEVICE:-cuda}
read -r -a extra <<< "${EXTRA:-}"
torch_lib=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONUNBUFFERED=1
out=${OUT:-.gpu/out}
mkdir -p "$out"
python=/opt/torch/.venv/bin/python
[ -x "$python" ] || python=python3
{ nvidia-smi -L || echo "no nvidia-smi"; } | tee "$out/device.txt"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu,memory.used \
  --format=csv 2>/dev/null | tee -a "$out/device.txt"

bench=(.gpu/train bench --preset gpt2-124m --device "$device" --micro-batch 16 --warmup 5 --steps 20 "${extra[@]}")
echo "== 1. ours, bf16: full + 4-stage phases"
timeout 180 "${bench[@]}" --schedule incremental --stages 4 --phase1-trainable new | tee "$out/ours.jsonl"
echo "ours: exit ${PIPESTATUS[0]}"

echo "== 2. PyTorch anchor"
if [ "$device" = cuda ]; then
  anchor=(--preset gpt2-124m --modes eager,compile --phases 4 --fwd-bwd)
else  # the CPU dry run: a tiny model, eager only
  anchor=(--device cpu --d-model 32 --layers 4 --heads 2 --context 32 --vocab 320 --batch 2 --steps 2 --warmup 1
    --modes eager --phases 4)
fi
timeout 240 "$python" .gpu/torch_gpt.py "${anchor[@]}" | tee "$out/torch.jsonl"
echo "torch: exit ${PIPESTATUS[0]}"

echo "== 3. ours, full step only: what each choice is worth"
# slug | label | extra flags; variants.tsv tells the summary which files to read.
variants=(
  "ce-torch|bf16, PyTorch cross_entropy|--set loss_kernel=cross_entropy"
  "chunk128|bf16, loss chunk 128 tokens|--set loss_kernel=chunked:128"
  "chunk256|bf16, loss chunk 256 tokens|--set loss_kernel=chunked:256"
  "chunk4096|bf16, loss chunk 4096 tokens|--set loss_kernel=chunked:4096"
  "fp32-tf32|fp32 + TF32 (no autocast)|--set bf16=false --set tf32=true"
  "fp32|fp32, no TF32|--set bf16=false --set tf32=false"
)
: > "$out/variants.tsv"
for v in "${variants[@]}"; do
  IFS='|' read -r slug label flags <<< "$v"
  read -r -a flag_array <<< "$flags"
  printf '%s\t%s\n' "$slug" "$label" >> "$out/variants.tsv"
  timeout 60 "${bench[@]}" "${flag_array[@]}" | tee "$out/ours-$slug.jsonl"
done

echo "== 4. training smoke test"
runs="$out/runs"
smoke=(.gpu/train --preset gpt2-124m --device "$device" --runs-dir "$runs" --quiet
  --set data_dir=.gpu/corpus-gpt2 --set steps=30 --set tokens_per_step=65536 --set warmup_steps=5
  --set val_every=10 --set val_tokens=65536 --set checkpoint_every=15 "${extra[@]}")
timeout 120 "${smoke[@]}" --run smoke-a; echo "smoke-a: exit $?"
timeout 60 "${smoke[@]}" --run smoke-b --stop-after-step 15; echo "smoke-b (to 15): exit $?"
timeout 60 .gpu/train --resume "$runs/smoke-b" --device "$device" --quiet; echo "smoke-b (resumed): exit $?"

echo "== 4b. data parallel on CUDA: NCCL with one rank, Gloo with 1 vs 2 processes (same global batch)"
dist=(.gpu/train --preset gpt2-124m --device "$device" --runs-dir "$runs" --quiet --dist-timeout 60
  --set data_dir=.gpu/corpus-gpt2 --set steps=10 --set tokens_per_step=65536 --set warmup_steps=2
  --set val_every=5 --set val_tokens=65536 --set checkpoint_every=0 --set bf16=false "${extra[@]}")
RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511 \
  timeout 120 "${dist[@]}" --dist-backend nccl --run nccl-1; echo "nccl-1: exit $?"
timeout 120 "${dist[@]}" --run gloo-1; echo "gloo-1: exit $?"
GLOO_SOCKET_IFNAME=lo timeout 150 "${dist[@]}" --dist-backend gloo --nproc 2 --run gloo-2; echo "gloo-2: exit $?"
# Checkpoints are 1.5 GB each: keep the logs, not the weights.
rm -rf "$runs"/*/checkpoints

echo "== 5. summary"
"$python" .gpu/gpu-summary.py "$out"
