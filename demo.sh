#!/bin/sh
# The Nerve walk-through, end to end, in a temporary directory: a center on the default ipc
# endpoints, a watched `echo`, `nrv-ctl version` and the `ps` table; then the same over
# tcp://127.0.0.1:44444 (with --insecure: no CURVE keys in a demo);
# then both centers stopped with SIGTERM and their nerve.log printed.
#
#   sh demo.sh
#
# Needs only cargo. Exits non-zero if any step fails. Leaves nothing behind.
set -eu

cd "$(dirname "$0")"
unset NERVE_ENDPOINT NERVE_CONTROL

TCP_EVENTS=tcp://127.0.0.1:44444
TCP_CONTROL=tcp://127.0.0.1:44445

if [ -t 1 ]; then bold=$(printf '\033[1m') plain=$(printf '\033[0m'); else bold="" plain=""; fi
say() { printf '\n%s%s%s\n' "$bold" "$*" "$plain"; }
fail() {
    printf 'demo.sh: %s\n' "$*" >&2
    if [ -n "${tmp:-}" ] && [ -f "$tmp/nerve.log" ]; then
        printf '\ndemo.sh: nerve.log so far:\n' >&2
        cat "$tmp/nerve.log" >&2
    fi
    exit 1
}

# Runs a command with stdin from /dev/null (the demo reads no input) and, where coreutils'
# timeout is there, at most 60 s. --foreground keeps the command in the terminal's process
# group, so it is never stopped for touching the terminal.
if timeout --foreground 5 true >/dev/null 2>&1; then
    bounded() { timeout --foreground 60 "$@" </dev/null; }
else
    bounded() { "$@" </dev/null; }
fi

say "\$ cargo build --quiet --bins"
cargo build --quiet --bins || fail "cargo build failed"
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target/debug"
for b in nrv-center nrv-open nrv-ctl; do
    [ -x "$bin/$b" ] || fail "$bin/$b was not built"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nerve-demo.XXXXXX")
pids=""
cleanup() {
    rc=$?
    for pid in $pids; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$tmp"
PATH="$bin:$PATH"
export PATH

# start_center CONTROL ARGS...: starts `nrv-center ARGS...` in the background, waits until
# nrv-ctl gets an answer on CONTROL (at most about 20 s) and sets $center_pid.
start_center() {
    control=$1
    shift
    say "\$ nrv-center $* &"
    nrv-center "$@" &
    center_pid=$!
    pids="$pids $center_pid"
    tries=0
    until nrv-ctl -c "$control" --timeout 0.2 version >/dev/null 2>&1; do
        if ! kill -0 "$center_pid" 2>/dev/null; then
            status=0
            wait "$center_pid" || status=$?
            fail "nrv-center $* exited with status $status before answering on $control (its message is above)"
        fi
        tries=$((tries + 1))
        [ "$tries" -lt 100 ] || fail "nrv-center $* did not answer on $control within 20 s"
        sleep 0.1
    done
}

# stop_center PID: SIGTERM, then waits (at most 10 s) and checks the exit status is 0.
stop_center() {
    kill -TERM "$1"
    tries=0
    while kill -0 "$1" 2>/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -lt 100 ] || fail "nrv-center (pid $1) did not stop within 10 s of SIGTERM"
        sleep 0.1
    done
    status=0
    wait "$1" || status=$?
    [ "$status" -eq 0 ] || fail "nrv-center (pid $1) exited with status $status after SIGTERM, expected 0"
}

# open_echo ENV...: runs `nrv-open echo bob is your uncle` and checks its output and status.
open_echo() {
    out=$(bounded env "$@" nrv-open echo bob is your uncle) || fail "nrv-open echo exited with status $?"
    printf '%s\n' "$out"
    [ "$out" = "bob is your uncle" ] || fail "nrv-open echo printed '$out', expected 'bob is your uncle'"
}

say "== over ipc:// (the default: ipc://nerve.sock and ipc://nerve-control.sock in $tmp)"
start_center ipc://nerve-control.sock -n demo-ipc
ipc_pid=$center_pid
say "\$ nrv-open echo bob is your uncle"
open_echo
say "\$ nrv-ctl version"
bounded nrv-ctl version || fail "nrv-ctl version exited with status $?"
say "\$ nrv-ctl ps --all        # the table: echo has ended, so --all"
table=$(bounded nrv-ctl ps --all) || fail "nrv-ctl ps --all exited with status $?"
printf '%s\n' "$table"
printf '%s\n' "$table" | grep -q 'echo .*EXITED' || fail "nrv-ctl ps --all does not list the echo as EXITED"

say "== over tcp:// (loopback)"
# tcp without CURVE needs --insecure, loopback too: every local user can reach the port (it
# warns so); give the center --curve-secret-key and --authorized-keys for real use.
start_center "$TCP_CONTROL" -n demo-tcp --insecure -e "$TCP_EVENTS" -c "$TCP_CONTROL"
tcp_pid=$center_pid
say "\$ NERVE_ENDPOINT=$TCP_EVENTS nrv-open echo bob is your uncle"
open_echo NERVE_ENDPOINT="$TCP_EVENTS"
say "\$ nrv-ctl -c $TCP_CONTROL version"
bounded nrv-ctl -c "$TCP_CONTROL" version || fail "nrv-ctl -c $TCP_CONTROL version exited with status $?"

say "\$ kill -TERM $ipc_pid $tcp_pid        # both centers"
stop_center "$ipc_pid"
stop_center "$tcp_pid"
pids=""
[ ! -e nerve.sock ] && [ ! -e nerve-control.sock ] || fail "nrv-center left its socket files behind after SIGTERM"

say "\$ cat nerve.log"
cat nerve.log

# The log must show both centers, both runs of echo and its output, and both stops.
for check in '"kind":"center_start"' '"kind":"hello"' '"kind":"start"' '"data":"bob is your uncle\n"' \
    '"kind":"return"' '"kind":"center_stop"'; do
    n=$(grep -cF "$check" nerve.log || true)
    [ "$n" -eq 2 ] || fail "nerve.log has $n lines with $check, expected 2 (one per center)"
done

say "demo.sh: ok"
