//! Records the git commit the binaries are built from, for `--version`
//! ([`nerve_proto::cli::GIT_COMMIT`]): `git rev-parse --short HEAD` when the source is a git
//! checkout and git runs, else nothing (a source tarball's build reports no commit).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=NERVE_GIT_COMMIT");
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=NERVE_GIT_COMMIT={commit}");
    // Built again when HEAD moves: HEAD itself (a checkout), the branch it names (a commit),
    // packed-refs (a branch that is packed). Only files that exist: cargo reruns a build script
    // on every build while a watched path is missing.
    let mut watched = vec![
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["rev-parse", "--git-path", "packed-refs"]),
    ];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    for path in watched.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
