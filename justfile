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

# Benchmarks of Nerve against a direct pipe (release builds); writes BENCHMARKS.md. Add
# `--quick` for a short run: `just bench --quick`.
bench *ARGS:
    cargo build --release --bins
    cargo bench -p nerve-bench --bench proto
    target/release/nerve-bench run --bin target/release --notes bench/NOTES.md {{ARGS}}

# The same, plus supervisord and Circus from PyPI in a throwaway venv, in the same run.
bench-peers *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    venv=$(mktemp -d /tmp/nerve-peers-XXXXXX)
    trap 'rm -rf "$venv"' EXIT
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet supervisor circus
    cargo build --release --bins
    cargo bench -p nerve-bench --bench proto
    target/release/nerve-bench run --bin target/release --notes bench/NOTES.md --peers "$venv" {{ARGS}}

# Issue 11's set, the center under load, every program at its default settings: capture of
# 256 MiB of NULs and of text lines (direct `cat > file`, supervisord and Circus in the same
# run), center ingest from 1/10/100 synthetic watchers, `nrv-ctl ps --json` with 1000
# processes (peers: their status with 1000). Rewrites only its own part of BENCHMARKS.md
# (between the `nerve-bench load` markers). `just bench-load --quick` for a short run;
# `just bench-load --compare DIR` also measures the binaries in DIR (an earlier build, with its
# nerve-bench) in the same runs, for a before/after table.
bench-load *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    venv=$(mktemp -d /tmp/nerve-peers-XXXXXX)
    trap 'rm -rf "$venv"' EXIT
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet supervisor circus
    cargo build --release --bins
    target/release/nerve-bench load --bin target/release --peers "$venv" {{ARGS}}

# The same as bench-peers on the static musl binaries (target/static, from bench/static.sh).
bench-static *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    venv=$(mktemp -d /tmp/nerve-peers-XXXXXX)
    trap 'rm -rf "$venv"' EXIT
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet supervisor circus
    cargo build --release --bins
    sh bench/static.sh
    target/release/nerve-bench run --static --notes bench/NOTES.md --peers "$venv" {{ARGS}}

# Static x86_64 musl binaries of nrv-center, nrv-open and nrv-ctl in target/static/.
static:
    sh bench/static.sh

# Static aarch64 musl binaries in target/static-aarch64/ (linked with rust-lld; run them on
# x86_64 with NERVE_BIN_RUNNER=qemu-aarch64-static, as .ci/run does).
static-aarch64:
    sh bench/static.sh aarch64-unknown-linux-musl
