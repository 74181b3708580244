#!/bin/sh
# Builds static nrv-center, nrv-open and nrv-ctl for x86_64-unknown-linux-musl into
# target/static/ and checks with `file` that each is statically linked. The Rust musl target is
# self-contained (it ships musl's libc and crt objects and links with rust-lld/gcc as the
# linker driver): no musl-gcc is needed, as no crate in these binaries compiles C code.
set -eu
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi
# relocation-model=static: a plain static executable ("statically linked"), not static-pie.
# The `static-musl` profile (Cargo.toml) is release with whole-program LTO in one codegen unit.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
    cargo build --profile static-musl --target "$target" --bins -p nerve-center -p nerve-open -p nerve-ctl
if ! command -v file >/dev/null; then
    apt-get install -y -q file >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q file >/dev/null; }
fi
mkdir -p target/static
for bin in nrv-center nrv-open nrv-ctl; do
    cp "target/$target/static-musl/$bin" target/static/
    kind=$(file -b "target/static/$bin")
    case "$kind" in
        *"statically linked"*) echo "target/static/$bin: $kind" ;;
        *) echo "target/static/$bin is not statically linked: $kind" >&2; exit 1 ;;
    esac
done
ls -l target/static/
