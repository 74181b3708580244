#!/bin/sh
# Builds static nrv-center, nrv-open and nrv-ctl for one musl target and checks with `file`
# that each is statically linked and for that machine:
#   sh bench/static.sh                            x86_64-unknown-linux-musl  -> target/static/
#   sh bench/static.sh aarch64-unknown-linux-musl aarch64 (arm64)          -> target/static-aarch64/
# The Rust musl targets are self-contained (they ship musl's libc and crt objects): no musl-gcc
# is needed, as no crate in these binaries compiles C code. x86_64 links with the host's cc as
# the linker driver; for aarch64 the host's cc is the wrong machine's, so it links with the
# toolchain's own rust-lld (unless CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER names another).
set -eu
cd "$(dirname "$0")/.."
target=${1:-x86_64-unknown-linux-musl}
case "$target" in
    x86_64-unknown-linux-musl) out=target/static machine=x86-64 ;;
    aarch64-unknown-linux-musl)
        out=target/static-aarch64 machine=aarch64
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER:-rust-lld}
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER
        ;;
    *) echo "bench/static.sh: unknown target $target (x86_64-unknown-linux-musl or aarch64-unknown-linux-musl)" >&2; exit 2 ;;
esac
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi
# nrv-open's start-up functions packed together (open/build.rs, open/nrv-open.order made by
# bench/symbol-order.sh): fewer text page faults per start. NERVE_OPEN_SYMBOL_ORDER= (empty)
# links in the default order. x86_64 only: the aarch64 link already runs rust-lld directly.
if [ "$target" = x86_64-unknown-linux-musl ]; then
    NERVE_OPEN_SYMBOL_ORDER=${NERVE_OPEN_SYMBOL_ORDER-open/nrv-open.order}
    export NERVE_OPEN_SYMBOL_ORDER
fi
# relocation-model=static: a plain static executable ("statically linked"), not static-pie.
# The `static-musl` profile (Cargo.toml) is release with whole-program LTO in one codegen unit.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
    cargo build --profile static-musl --target "$target" --bins -p nerve-center -p nerve-open -p nerve-ctl
if ! command -v file >/dev/null; then
    apt-get install -y -q file >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q file >/dev/null; }
fi
mkdir -p "$out"
for bin in nrv-center nrv-open nrv-ctl; do
    # rm first: target/ may be hard-linked to other worktrees' copies, and cp would write into them.
    rm -f "$out/$bin"
    cp "target/$target/static-musl/$bin" "$out/"
    kind=$(file -b "$out/$bin")
    case "$kind" in
        *"$machine"*"statically linked"*) echo "$out/$bin: $kind" ;;
        *) echo "$out/$bin is not a static $machine executable: $kind" >&2; exit 1 ;;
    esac
done
ls -l "$out/"
