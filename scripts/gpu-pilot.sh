#!/usr/bin/env bash
# The GPU pilot study (studies/gpu-pilot.toml) on the lent GPU machine, from the repo root, after
# `just gpu-build` staged .gpu/ here:
#   device run, carry [".gpu"], timeout_s 330, command: bash .gpu/pilot.sh
# Under five minutes of one H200 (the study is stopped at 280 s): four arms, two seeds, the
# baseline annealed at 0.5 and 1, the others at 1, four runs at a time, HellaSwag (when
# .gpu/hellaswag_val.jsonl was staged) at the end of every run. The logs
# come back as $OUT/gpu-pilot-runs.tar.gz; here, unpack it into reports/gpu-pilot/runs and
# `just report --runs reports/gpu-pilot/runs --out reports/gpu-pilot` draws Figure 1 and the rest.
# A run cut short by the timeout is resumed by running this again on a warm machine.
# Dry run here on the CPU (the same design shrunk to 40 steps of width 32, to check the plumbing,
# HellaSwag and Figure 1 included; a few minutes on 2 cores):
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
  sed -e 's/^steps = 400$/steps = 40/' -e 's/^model.d_model = 128$/model.d_model = 32/' -e 's/^micro_batch = 64$/micro_batch = 4/' \
      -e 's/^tokens_per_step = 32768$/tokens_per_step = 4096/' -e 's/^val_tokens = 262144$/val_tokens = 4096/' \
      -e 's/^bf16 = true$/bf16 = false/' -e 's/^hellaswag_limit = 1000$/hellaswag_limit = 20/' \
      -e 's/^warmup_steps = 20$/warmup_steps = 4/' -e 's/^val_every = 200$/val_every = 20/' \
      -e 's/^device = "cuda"/device = "cpu"/' studies/gpu-pilot.toml > "$design"
  # Every substitution must have taken (the design's [config] table changes shape at times).
  for want in "steps = 40" "model.d_model = 32" "micro_batch = 4" "tokens_per_step = 4096" "val_tokens = 4096" \
              "bf16 = false" "hellaswag_limit = 20" "warmup_steps = 4" "val_every = 20" 'device = "cpu"'; do
    grep -qx "$want" "$design" || { echo "pilot: the dry-run design lacks '$want': update gpu-pilot.sh's substitutions" >&2; exit 2; }
  done
  jobs=2
fi
hellaswag=()
[ -f .gpu/hellaswag_val.jsonl ] && hellaswag=(--hellaswag .gpu/hellaswag_val.jsonl)
{ nvidia-smi -L || echo "no nvidia-smi"; } | tee "$out/device.txt"
start=$(date +%s)
# The study in the background, by its own process id: stopped (SIGTERM, then SIGKILL) at the
# time limit; its workers die with it (they are tied to their parent).
.gpu/train study --design "$design" --runs-dir "$runs" --jobs "$jobs" "${hellaswag[@]}" > "$out/pilot.log" 2>&1 &
study=$!
limit=${PILOT_SECONDS:-280}
while kill -0 "$study" 2>/dev/null && [ $(( $(date +%s) - start )) -lt "$limit" ]; do sleep 1; done
if kill -0 "$study" 2>/dev/null; then
  echo "pilot: stopping the study (process $study) at the ${limit} s limit" | tee -a "$out/pilot.log"
  kill -TERM "$study"; sleep 5; kill -KILL "$study" 2>/dev/null || true
fi
wait "$study"; status=$?
cat "$out/pilot.log"
echo "pilot: exit $status after $(( $(date +%s) - start )) s" | tee -a "$out/pilot.log"
# Logs only: checkpoints stay behind.
tar -czf "$out/gpu-pilot-runs.tar.gz" --exclude=checkpoints --exclude=.claims --exclude=.lock -C .gpu/gpu-pilot runs
ls -la "$out"
