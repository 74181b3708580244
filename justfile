# Nerve's everyday commands. Install just with `cargo install just`; every recipe is a plain
# cargo or sh command, so nothing here is needed to build or test.

# List the recipes.
default:
    @just --list

# Build every crate and the three binaries (nrv-center, nrv-open, nrv-ctl).
build:
    cargo build --workspace --bins

# Run every test in the workspace (the README's test command).
test:
    cargo test --workspace

# Check formatting and lints as CI does.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format every crate.
fmt:
    cargo fmt --all

# Walk through Nerve end to end in a temporary directory (ipc, then tcp).
demo:
    sh demo.sh

# Run what CI runs: versions, fmt check, clippy, tests, demo.
ci:
    sh .ci/run
