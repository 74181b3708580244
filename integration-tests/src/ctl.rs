//! Running `nrv-ctl` and reading its JSON output (`ps --json`, `ring --json`).

use crate::{ctl_command, run, Input, Outcome, Running, WAIT};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Runs `nrv-ctl -c CONTROL ARGS...` in `dir` to its end (bounded by `timeout`).
pub fn run_ctl(dir: &Path, control: &str, args: &[&str], timeout: Duration) -> Outcome {
    run(
        ctl_command(dir, control, args),
        Input::Null,
        timeout,
        &format!("nrv-ctl {}", args.join(" ")),
    )
}

/// Runs `nrv-ctl -c CONTROL ARGS...` in `dir` with `input` on its stdin, to its end (bounded by
/// `timeout`).
pub fn run_ctl_with_input(dir: &Path, control: &str, args: &[&str], input: Input, timeout: Duration) -> Outcome {
    run(
        ctl_command(dir, control, args),
        input,
        timeout,
        &format!("nrv-ctl {}", args.join(" ")),
    )
}

/// Starts `nrv-ctl -c CONTROL ARGS...` in `dir` in the background (for `tail -f`, `events -f`).
pub fn spawn_ctl(dir: &Path, control: &str, args: &[&str]) -> Running {
    Running::spawn(
        ctl_command(dir, control, args),
        Input::Null,
        &format!("nrv-ctl {}", args.join(" ")),
    )
}

/// Runs `nrv-ctl -c CONTROL ARGS...` (bounded by [`WAIT`]) and expects exit 0.
///
/// # Panics
/// When it exits otherwise (with its output).
pub fn run_ctl_ok(dir: &Path, control: &str, args: &[&str]) -> Outcome {
    let out = run_ctl(dir, control, args, WAIT);
    assert_eq!(
        out.code(),
        Some(0),
        "nrv-ctl {} should exit 0; {}",
        args.join(" "),
        out.describe()
    );
    out
}

/// Runs `nrv-ctl -c CONTROL ARGS...` (bounded by [`WAIT`]), expects exit 0 and one JSON value on
/// stdout, and returns it.
///
/// # Panics
/// When it exits otherwise or stdout is not JSON (with its output).
pub fn ctl_json(dir: &Path, control: &str, args: &[&str]) -> Value {
    let out = run_ctl_ok(dir, control, args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout of nrv-ctl {} is not one JSON value ({e}); {}",
            args.join(" "),
            out.describe()
        )
    })
}

/// `nrv-ctl ps --json EXTRA...`: the rows.
///
/// # Panics
/// As [`ctl_json`], and when the value is not an array of objects.
pub fn ps_json(dir: &Path, control: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["ps", "--json"];
    args.extend_from_slice(extra);
    let value = ctl_json(dir, control, &args);
    let Value::Array(rows) = value else {
        panic!("nrv-ctl {} printed {value}, not a JSON array", args.join(" "));
    };
    for row in &rows {
        assert!(
            row.is_object(),
            "nrv-ctl {}: row {row} is not an object",
            args.join(" ")
        );
    }
    rows
}

/// `nrv-ctl ring --json`: one object per peer (`center`, `sync`, `state`, `last_heard_secs`,
/// `rows`, `seq`).
///
/// # Panics
/// As [`ctl_json`], and when the value is not an array.
pub fn ring_json(dir: &Path, control: &str) -> Vec<Value> {
    match ctl_json(dir, control, &["ring", "--json"]) {
        Value::Array(peers) => peers,
        other => panic!("nrv-ctl ring --json printed {other}, not a JSON array"),
    }
}

/// The rows of a `ps --json` array for process `id` (full 16 hex digits).
pub fn rows_of<'a>(rows: &'a [Value], id: &str) -> Vec<&'a Value> {
    rows.iter().filter(|r| r["id"].as_str() == Some(id)).collect()
}

/// The one row for process `id`.
///
/// # Panics
/// When there is not exactly one.
pub fn row_of<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    match rows_of(rows, id).as_slice() {
        [one] => one,
        other => panic!(
            "expected exactly one ps row with id {id}, found {}; rows: {}",
            other.len(),
            Value::Array(rows.to_vec())
        ),
    }
}
