#!/bin/sh
# Where nrv-center's time goes in ingest and in capture (issue 11): each workload once under
# valgrind's callgrind (instructions per function: exact and robust to a noisy machine, user
# space only) and once under `perf record -e cpu-clock` (time samples, kernel included; this
# machine has no hardware counters), and once under `strace -f -c` (system calls per event).
# Writes target/profile/: *.callgrind and *.perf.data, and the reports *.callgrind.txt
# (callgrind_annotate, self), *.callgrind-inclusive.txt, *.perf.txt (perf report, flat) and
# *.strace.txt.
#
# Usage (from the workspace root, after cargo build --release --bins):
#   sh bench/profile.sh [BIN_DIR]        BIN_DIR defaults to target/release
#   PROFILE=ingest|capture|ps           only that part; PROFILE_OUT=DIR    reports into DIR
set -eu
bin=$(cd "${1:-target/release}" && pwd)
bench=$(pwd)/target/release/nerve-bench
out=${PROFILE_OUT:-$(pwd)/target/profile}
mkdir -p "$out"
# Smaller workloads under callgrind (it runs the center about 50 times slower).
cg_events=20000
cg_bytes=$((16 << 20))
perf_events=200000
perf_bytes=$((256 << 20))

# start TAG TOOL...: a center with its default settings in a new directory, under TOOL; sets
# $dir and $pid (the process to TERM when done: the center itself, or perf's child).
start() {
    tag=$1
    shift
    dir=$(mktemp -d "/tmp/nrv-prof-$tag-XXXXXX")
    (cd "$dir" && exec "$@" "$bin/nrv-center" -n bench -l nerve.log --logdir logs >"$dir/center.stdout" 2>"$dir/center.stderr") &
    pid=$!
    i=0
    until grep -q center_start "$dir/nerve.log" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 600 ] || { echo "profile: $tag: the center did not start" >&2; cat "$dir/center.stderr" >&2; exit 1; }
        sleep 0.05
    done
    # Under perf the center is perf's child.
    child=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null | cut -d' ' -f1)
    center=${child:-$pid}
}

# stop: TERM to the center, wait for the tool to write its file, remove the directory.
stop() {
    kill -TERM "$center"
    wait "$pid" || true
    rm -rf "$dir"
}

# capture NAME BYTES WRITER-OPTION...: nrv-open running the writer, to its end; its default
# settings but for its patience: under callgrind the center is about 50 times slower, and with
# the defaults nrv-open takes its silence for a dead connection (ping 1 s), reconnects, stops
# holding the writer back (stall timeout 2 s) and gives up on its acks at exit (linger 5 s); the
# profile would then show the reconnects and protocol errors instead of the capture.
capture() {
    name=$1
    bytes=$2
    shift 2
    (cd "$dir" && "$bin/nrv-open" --name "$name" --linger 600 --stall-timeout 600 --ping-interval 60 -- "$bench" write "$bytes" "$@" >/dev/null 2>"$dir/open.stderr")
    if grep -q protocol_error "$dir/nerve.log"; then
        echo "profile: protocol errors in $name's run:" >&2
        grep protocol_error "$dir/nerve.log" | head -3 >&2
    fi
}

report_cg() {
    callgrind_annotate --inclusive=no "$out/$1.callgrind" 2>/dev/null | head -60 >"$out/$1.callgrind.txt"
    callgrind_annotate --inclusive=yes "$out/$1.callgrind" 2>/dev/null | head -80 >"$out/$1.callgrind-inclusive.txt"
}

report_perf() {
    {
        perf report -i "$out/$1.perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^$'
        perf report -i "$out/$1.perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -50
    } >"$out/$1.perf.txt"
}

# Which parts: PROFILE=ingest, PROFILE=capture or PROFILE=ps runs only that one.
part=${PROFILE:-all}

[ "$part" = all ] || [ "$part" = ingest ] && for w in 1 100; do
    start "ingest$w" valgrind --tool=callgrind --callgrind-out-file="$out/ingest$w.callgrind"
    "$bench" ingest "$w" "$cg_events" --endpoint "ipc://$dir/nerve.sock"
    stop
    report_cg "ingest$w"
    start "ingest$w" perf record -q -e cpu-clock -F 1000 --call-graph dwarf,16384 -o "$out/ingest$w.perf.data" --
    "$bench" ingest "$w" "$perf_events" --endpoint "ipc://$dir/nerve.sock"
    stop
    report_perf "ingest$w"
    start "ingest$w" strace -f -c -o "$out/ingest$w.strace.txt"
    "$bench" ingest "$w" "$perf_events" --endpoint "ipc://$dir/nerve.sock"
    stop
done

[ "$part" = all ] || [ "$part" = capture ] && for kind in zeros text; do
    case $kind in
    zeros) opt=--zeros ;;
    text) opt="--line 100" ;;
    esac
    start "capture-$kind" valgrind --tool=callgrind --callgrind-out-file="$out/capture-$kind.callgrind"
    # shellcheck disable=SC2086
    capture cap "$cg_bytes" $opt
    stop
    report_cg "capture-$kind"
    start "capture-$kind" perf record -q -e cpu-clock -F 1000 --call-graph dwarf,16384 -o "$out/capture-$kind.perf.data" --
    # shellcheck disable=SC2086
    capture cap "$perf_bytes" $opt
    stop
    report_perf "capture-$kind"
    start "capture-$kind" strace -f -c -o "$out/capture-$kind.strace.txt"
    # shellcheck disable=SC2086
    capture cap "$perf_bytes" $opt
    stop
done
# ps --json with 1000 processes: 1000 synthetic watchers (nerve-bench hold), then nrv-ctl. The
# center's instructions for 20 requests (callgrind, counters zeroed after the hellos), the
# client's (callgrind of one nrv-ctl), and CPU time of each side (perf stat task-clock; the
# center's from /proc before and after 20 requests).
ps_runs=20
hold() {
    "$bench" hold 1000 --endpoint "ipc://$dir/nerve.sock" >"$dir/hold.out" &
    holder=$!
    until grep -q ready "$dir/hold.out" 2>/dev/null; do sleep 0.1; done
    until [ "$(cd "$dir" && "$bin/nrv-ctl" ps --json | grep -o '"id"' | wc -l)" -ge 1000 ]; do sleep 0.1; done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
[ "$part" = all ] || [ "$part" = ps ] && {
    start ps valgrind --tool=callgrind --callgrind-out-file="$out/ps1000-center.callgrind"
    hold
    callgrind_control -z "$center" >/dev/null
    for _ in $(seq $ps_runs); do (cd "$dir" && "$bin/nrv-ctl" ps --json >/dev/null); done
    kill "$holder"
    stop
    report_cg ps1000-center
    start ps env
    hold
    (cd "$dir" && valgrind --tool=callgrind --callgrind-out-file="$out/ps1000-ctl.callgrind" "$bin/nrv-ctl" ps --json >/dev/null 2>&1)
    report_cg ps1000-ctl
    (cd "$dir" && strace -f -c -o "$out/ps1000-ctl.strace.txt" "$bin/nrv-ctl" ps --json >/dev/null)
    t0=$(cpu_ticks "$center")
    (cd "$dir" && perf stat -e task-clock -r "$ps_runs" -o "$out/ps1000-ctl.perfstat.txt" "$bin/nrv-ctl" ps --json >/dev/null)
    t1=$(cpu_ticks "$center")
    echo "center CPU for $ps_runs ps --json with 1000: $((t1 - t0)) ticks of 1/$(getconf CLK_TCK) s" >"$out/ps1000-center.cpu.txt"
    (cd "$dir" && "$bin/nrv-ctl" ps --json | wc -c) >"$out/ps1000-ctl.bytes.txt"
    kill "$holder"
    stop
}
echo "profile: reports in $out"
