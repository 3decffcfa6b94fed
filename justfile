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

# Everything CI checks: formatting, clippy (warnings are errors), and every test.
test: setup
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --quiet -- -D warnings
    LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" cargo test --workspace

# Format the code.
fmt:
    cargo fmt --all
