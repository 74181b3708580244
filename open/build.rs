//! Links `nrv-open` with a symbol ordering file when `NERVE_OPEN_SYMBOL_ORDER` names one
//! (`bench/static.sh` does, for the static musl build; see `bench/symbol-order.sh`): the
//! functions a start runs are then packed together at the front of the text, so a start
//! faults in fewer of its 64 KiB fault-around windows (BENCHMARKS.md, "Issue 10, sixth
//! pass"). The file is one mangled symbol name per line; lld places those functions first, in
//! that order, and ignores names it does not find (`--no-warn-symbol-ordering`), so a list
//! made from an older build still links and only loses some of its effect.
//!
//! The ordering needs lld (GNU ld has no such option): the linker driver `cc` is pointed at
//! the toolchain's own `rust-lld` (its `gcc-ld/ld.lld` wrapper). Without the variable, or when
//! the toolchain has no `rust-lld`, nothing changes: the default linker, the default order.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The variable naming the ordering file (a path, absolute or relative to the workspace).
const ORDER_VAR: &str = "NERVE_OPEN_SYMBOL_ORDER";

fn main() {
    println!("cargo:rerun-if-env-changed={ORDER_VAR}");
    let Some(order) = std::env::var_os(ORDER_VAR).filter(|v| !v.is_empty()) else {
        return;
    };
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let order = manifest.join("..").join(order);
    if !order.is_file() {
        println!(
            "cargo:warning={ORDER_VAR}={} is not a file: nrv-open is linked in the default order",
            order.display()
        );
        return;
    }
    println!("cargo:rerun-if-changed={}", order.display());
    let Some(gcc_ld) = lld_wrapper_dir() else {
        println!("cargo:warning=no rust-lld in the toolchain: nrv-open is linked in the default order");
        return;
    };
    for arg in [
        "-fuse-ld=lld".to_string(),
        format!("-B{}", gcc_ld.display()),
        format!("-Wl,--symbol-ordering-file={}", order.display()),
        "-Wl,--no-warn-symbol-ordering".to_string(),
        // One writable segment, as GNU ld makes it: lld puts the RELRO part in a page-aligned
        // segment of its own, one more page each watcher dirties (4 KiB of Private_Dirty). A
        // static non-PIE musl binary never write-protects that part anyway (no dynamic
        // linker applies RELRO), so nothing is lost.
        "-Wl,-z,norelro".to_string(),
    ] {
        println!("cargo:rustc-link-arg-bin=nrv-open={arg}");
    }
}

/// The toolchain's `lib/rustlib/HOST/bin/gcc-ld`, whose `ld.lld` runs `rust-lld` for `cc
/// -fuse-ld=lld`, if it is there.
fn lld_wrapper_dir() -> Option<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc).args(["--print", "sysroot"]).output().ok()?;
    let sysroot = String::from_utf8(out.stdout).ok()?;
    let host = std::env::var("HOST").ok()?;
    let dir = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin/gcc-ld");
    dir.join("ld.lld").is_file().then_some(dir)
}
