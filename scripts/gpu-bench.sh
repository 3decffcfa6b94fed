#!/usr/bin/env bash
# Runs on the lent GPU machine from the repo root, after `just gpu-build` staged .gpu/ here:
#   device run, carry [".gpu"], timeout_s 480, command: bash .gpu/run.sh
# One call (about 7 minutes), so every ratio compares numbers from the same card, most important
# first; each part has its own timeout and a failure does not stop the others:
#   1. our full step, CUDA graphs on and off: GPT-2 124M (16 x 1024) and byte-level d128, d256
#      (64 x 256) and d512 (32 x 512), 12 layers, bf16;
#   2. the project's own PyTorch anchor (scripts/anchors/torch_gpt.py) on the same shapes: eager,
#      torch.compile, compile with CUDA graphs, and the whole eager step as one CUDA graph;
#   3. the phases of a 4-stage schedule, ours (graphs) and the anchor's (eager), vs the FLOP model;
#   4. what else might pay, one change at a time: micro-batch 32, the loss kernel, fp32, each
#      attention kernel alone;
#   5. determinism: two `--deterministic` runs and one stopped and resumed (bits compared), and
#      the step's cost with it on;
#   6. a training smoke test (30 steps; stopped at 15 and resumed) and data parallel on CUDA;
#   7. the summary (scripts/gpu-summary.py): tables, our warning lines counted (any fails it),
#      printed last and written to $OUT/summary.md.
# If the call runs out of time, the raw files still come back: `python3 scripts/gpu-summary.py
# <files_at>` makes the tables.
# Dry run here on the CPU (checks the plumbing with tiny models, not the numbers):
#   just gpu-build && DEVICE=cpu bash .gpu/run.sh
set -uo pipefail
device=${DEVICE:-cuda}
torch_lib=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
export LD_LIBRARY_PATH=.gpu:$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONUNBUFFERED=1
out=${OUT:-.gpu/out}
mkdir -p "$out"
python=/opt/torch/.venv/bin/python
[ -x "$python" ] || python=${PYTHON:-python3}
train=.gpu/train
# Everything our binary prints to stderr, for the warning count.
ours_log="$out/ours-stderr.log"
: > "$ours_log"
# ours SECONDS COMMAND...: our binary under a timeout, its stderr shown and kept for the count.
ours() { local limit=$1; shift; timeout "$limit" "$@" 2> >(tee -a "$ours_log" >&2); }
{ nvidia-smi -L || echo "no nvidia-smi"; } | tee "$out/device.txt"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu,memory.used \
  --format=csv 2>/dev/null | tee -a "$out/device.txt"

# The shapes: GPT-2 124M, and the byte-level models a study runs by the hundred (name|our flags|
# d_model context micro-batch). On the CPU dry run every one shrinks to milliseconds a step.
if [ "$device" = cuda ]; then
  gpt2=(--preset gpt2-124m)
  small() { echo "--preset tiny --set model.d_model=$1 --set model.heads=$(( $1 / 64 > 2 ? $1 / 64 : 2 )) --set model.context=$2 --set bf16=true --micro-batch $3"; }
  shapes=("d128|$(small 128 256 64)|128 256 64" "d256|$(small 256 256 64)|256 256 64" "d512|$(small 512 512 32)|512 512 32")
  anchor_gpt2=(--preset gpt2-124m)
  anchor_small=()
  steps=(--warmup 5 --steps 20)
  smoke=("$train" --device cuda --preset gpt2-124m --set data_dir=.gpu/corpus-gpt2 --set tokens_per_step=65536
    --set val_tokens=65536)
else
  gpt2=(--preset tiny --set model.d_model=32 --set model.heads=2 --set model.context=32 --set micro_batch=4)
  shapes=("d32|--preset tiny --set model.d_model=32 --set model.heads=2 --set model.context=32 --micro-batch 4|32 32 4")
  anchor_gpt2=(--device cpu --d-model 32 --heads 2 --layers 12 --context 32 --vocab 320 --batch 4)
  anchor_small=(--device cpu)
  steps=(--warmup 2 --steps 2)
  smoke=("$train" --device cpu --preset gpt2-124m --set data_dir=.gpu/corpus-gpt2 --set model.layers=2
    --set model.d_model=32 --set model.heads=2 --set model.context=32 --set micro_batch=4 --set tokens_per_step=256
    --set val_tokens=256)
fi
smoke+=(--runs-dir "$out/runs" --quiet --set steps=30 --set warmup_steps=5 --set val_every=10 --set checkpoint_every=15)
bench=("$train" bench --device "$device" "${steps[@]}")
anchor=("$python" .gpu/torch_gpt.py "${steps[@]}")

echo "== 1. ours: the full step, CUDA graphs on and off"
ours 90 "${bench[@]}" --schedule baseline "${gpt2[@]}" | tee "$out/ours-gpt2-graphs.jsonl"
ours 90 "${bench[@]}" --schedule baseline "${gpt2[@]}" --set cuda_graphs=false | tee "$out/ours-gpt2-eager.jsonl"
for shape in "${shapes[@]}"; do
  IFS='|' read -r name flags _ <<< "$shape"
  read -r -a flag_array <<< "$flags"
  ours 60 "${bench[@]}" --schedule baseline "${flag_array[@]}" | tee "$out/ours-$name-graphs.jsonl"
  ours 60 "${bench[@]}" --schedule baseline "${flag_array[@]}" --set cuda_graphs=false | tee "$out/ours-$name-eager.jsonl"
done

echo "== 2. the PyTorch anchor on the same shapes"
if [ "$device" = cuda ]; then gpt2_modes=eager,compile,eager-graph; small_modes=eager,compile-graphs,eager-graph
else gpt2_modes=eager,eager-graph; small_modes=eager; fi
timeout 150 "${anchor[@]}" "${anchor_gpt2[@]}" --modes "$gpt2_modes" | tee "$out/torch-gpt2.jsonl"
for shape in "${shapes[@]}"; do
  IFS='|' read -r name _ dims <<< "$shape"
  read -r d t b <<< "$dims"
  timeout 100 "${anchor[@]}" "${anchor_small[@]}" --d-model "$d" --layers 12 --context "$t" --vocab 320 --batch "$b" \
    --modes "$small_modes" | tee "$out/torch-$name.jsonl"
done

echo "== 3. the phases of a 4-stage schedule vs the FLOP model"
ours 90 "${bench[@]}" --schedule incremental --stages 4 --phase1-trainable new "${gpt2[@]}" | tee "$out/ours.jsonl"
timeout 90 "${anchor[@]}" "${anchor_gpt2[@]}" --modes eager --phases 4 --fwd-bwd | tee "$out/torch.jsonl"

echo "== 4. one change at a time (GPT-2 124M, graphs on)"
variants=(
  "mb32|micro-batch 32|--micro-batch 32"
  "ce-torch|PyTorch cross_entropy|--set loss_kernel=cross_entropy"
  "chunk4096|loss chunk 4096 tokens|--set loss_kernel=chunked:4096"
  "fp32-tf32|fp32 + TF32 (no autocast)|--set bf16=false --set tf32=true"
  "sdpa-flash|attention: flash only|--set sdpa_backend=flash"
  "sdpa-cudnn|attention: cuDNN only|--set sdpa_backend=cudnn"
  "sdpa-efficient|attention: memory-efficient only|--set sdpa_backend=efficient"
  "deterministic|--deterministic|--deterministic"
)
: > "$out/variants.tsv"
for v in "${variants[@]}"; do
  IFS='|' read -r slug label flags <<< "$v"
  read -r -a flag_array <<< "$flags"
  printf '%s\t%s\n' "$slug" "$label" >> "$out/variants.tsv"
  ours 60 "${bench[@]}" --schedule baseline "${gpt2[@]}" "${flag_array[@]}" | tee "$out/ours-$slug.jsonl"
done

echo "== 5. determinism: two --deterministic runs, and one stopped at 15 and resumed"
runs="$out/runs"
ours 120 "${smoke[@]}" --deterministic --run det-a; echo "det-a: exit $?"
ours 120 "${smoke[@]}" --deterministic --run det-b; echo "det-b: exit $?"
ours 60 "${smoke[@]}" --deterministic --run det-c --stop-after-step 15; echo "det-c (to 15): exit $?"
ours 60 "$train" --resume "$runs/det-c" --device "$device" --quiet; echo "det-c (resumed): exit $?"

echo "== 6. training smoke test (graphs, default settings) and data parallel"
ours 120 "${smoke[@]}" --run smoke-a; echo "smoke-a: exit $?"
ours 60 "${smoke[@]}" --run smoke-b --stop-after-step 15; echo "smoke-b (to 15): exit $?"
ours 60 "$train" --resume "$runs/smoke-b" --device "$device" --quiet; echo "smoke-b (resumed): exit $?"
dist=("${smoke[@]}" --set steps=10 --set val_every=5 --set checkpoint_every=0 --set bf16=false --dist-timeout 60)
if [ "$device" = cuda ]; then
  RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511 \
    ours 120 "${dist[@]}" --dist-backend nccl --run nccl-1; echo "nccl-1: exit $?"
fi
ours 120 "${dist[@]}" --run gloo-1; echo "gloo-1: exit $?"
GLOO_SOCKET_IFNAME=lo ours 150 "${dist[@]}" --dist-backend gloo --nproc 2 --run gloo-2; echo "gloo-2: exit $?"
# Checkpoints are 1.5 GB each at GPT-2 124M: keep the logs, not the weights.
rm -rf "$runs"/*/checkpoints

echo "== 7. summary"
"$python" .gpu/gpu-summary.py "$out"
