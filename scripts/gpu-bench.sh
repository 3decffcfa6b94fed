#!/usr/bin/env bash
# Runs on the lent GPU machine from the repo root, after `just gpu-build` staged .gpu/ here:
#   device run, carry [".gpu"], command: bash .gpu/run.sh
# Our bench and the PyTorch anchor in one call, so their ratio is fair. Well inside 10 minutes.
set -uo pipefail
torch_lib=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONUNBUFFERED=1
out=${OUT:-.gpu/out}
mkdir -p "$out"
nvidia-smi -L | tee "$out/device.txt"
# gpt2-124m, micro-batch 16×1024, bf16: the full step and every phase of a 4-stage schedule.
timeout 300 .gpu/train bench --preset gpt2-124m --device cuda --micro-batch 16 \
  --schedule incremental --stages 4 --phase1-trainable new --warmup 5 --steps 20 | tee "$out/ours.jsonl"
echo "ours: exit $?"
if [ -f .gpu/torch_gpt2_bench.py ]; then
  timeout 240 /opt/torch/.venv/bin/python .gpu/torch_gpt2_bench.py | tee "$out/torch.jsonl"
  echo "torch: exit $?"
fi
