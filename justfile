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

# Equal-compute targets, e.g. `just cost --stages 12` or `just cost --stages 8 --json`.
cost *args:
    @cargo run --quiet --release -p cost-model --bin cost -- "$@"

# Fetch the embedded corpus and tokenize it, e.g. `just data` (bytes) or `just data --tokenizer gpt2`.
data *args:
    @scripts/fetch-corpus
    @cargo run --quiet --release -p trainer --bin train -- data "$@"

# Train (default: tiny preset, baseline, embedded corpus), e.g. `just train --resume runs/<run>`.
train *args: setup
    @scripts/fetch-corpus
    @cargo run --quiet --release -p trainer --bin train -- data --if-missing
    @cargo run --quiet --release -p trainer --bin train -- "$@"

# Export a run's checkpoint in Hugging Face GPT-2 layout, e.g. `just export runs/<run> --step 500`.
export *args:
    @cargo run --quiet --release -p trainer --bin train -- export "$@"

# Everything CI checks: formatting, clippy (warnings are errors), and every test.
test: setup
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --quiet -- -D warnings
    LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" cargo test --workspace

# Format the code.
fmt:
    cargo fmt --all
