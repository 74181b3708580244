//! `nrv-ctl`: the command-line shell around the `nerve_ctl` library.

use anyhow::Context;
use nerve_ctl::{cli, Exit};
use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = match std::env::args_os().skip(1).map(|a| a.into_string()).collect() {
        Ok(args) => args,
        Err(bad) => {
            eprintln!("nrv-ctl: argument {bad:?} is not valid UTF-8");
            return Exit::Usage.into();
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // `--version` among the global options, before the command (GNU's convention).
    if nerve_proto::cli::asks_for_version_with(&args, || nerve_ctl::usage::help_info(None)) {
        let line = nerve_proto::cli::version_line("nrv-ctl", env!("CARGO_PKG_VERSION"), nerve_proto::cli::GIT_COMMIT);
        let _ = writeln!(std::io::stdout(), "{line}");
        return Exit::Ok.into();
    }
    let env: std::collections::HashMap<String, std::ffi::OsString> =
        [cli::CONTROL_ENV, zmtp::SERVER_KEY_ENV, zmtp::SECRET_KEY_ENV]
            .into_iter()
            .filter_map(|k| std::env::var_os(k).map(|v| (k.to_string(), v)))
            .collect();
    let invocation = match cli::parse_env("nrv-ctl", &args, |k| env.get(k).map(|v| v.as_os_str())) {
        Ok(invocation) => invocation,
        Err(early) => {
            if early.exit == Exit::Ok {
                // `nrv-ctl --help | head`: a closed pipe is not an error.
                let _ = writeln!(std::io::stdout(), "{}", early.output);
            } else {
                eprintln!("nrv-ctl: {}", early.output.trim_end());
                eprintln!("Run nrv-ctl --help for more information.");
            }
            return early.exit.into();
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("nrv-ctl: {e:#}");
            return Exit::Failed.into();
        }
    };
    // Buffered: a table of 1000 rows is one write, not one per line (StdoutLock flushes at
    // every newline); the streams (`tail -f`, `events -f`) flush after each reply.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let result = runtime.block_on(nerve_ctl::run(&invocation, &mut out));
    drop(out);
    match result {
        Ok(()) => Exit::Ok.into(),
        // The reader went away (`nrv-ctl ps | head -1`): nothing to say, as other tools.
        Err(nerve_ctl::CtlError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Exit::Ok.into(),
        Err(e) => {
            // An error may quote what a center or a process sent: escaped, line by line.
            let text = e.to_string();
            let lines: Vec<_> = text.lines().map(nerve_ctl::escape_for_terminal).collect();
            eprintln!("nrv-ctl: {}", lines.join("\n"));
            e.exit().into()
        }
    }
}
