#!/bin/sh
# Regenerates open/nrv-open.order, the symbol ordering file of the static nrv-open
# (open/build.rs; BENCHMARKS.md, "Issue 10, sixth pass"): the functions one start runs, from
# `nrv-open --name p --startsecs 0 --linger 1 -- /usr/bin/true` against a center, under
# valgrind's callgrind. Run it after a change that renames many functions (a new dependency
# version, a new toolchain, a reshaped start path); a stale list still links, it only packs
# less of the start-up together (the script says how many of the names the new build has).
#
# Usage (from the workspace root): sh bench/symbol-order.sh
# Needs valgrind and nm; builds the static binaries with bench/static.sh first.
set -eu
cd "$(dirname "$0")/.."
order=open/nrv-open.order
NERVE_OPEN_SYMBOL_ORDER=$order sh bench/static.sh >/dev/null
bin=$(pwd)/target/static
dir=$(mktemp -d /tmp/nrv-order-XXXXXX)
trap 'kill -TERM "$center" 2>/dev/null || true; rm -rf "$dir"' EXIT
(cd "$dir" && exec "$bin/nrv-center" -n order -l nerve.log --logdir logs >center.out 2>&1) &
center=$!
i=0
until grep -q center_start "$dir/nerve.log" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 200 ] || { echo "symbol-order: the center did not start:" >&2; cat "$dir/center.out" >&2; exit 1; }
    sleep 0.05
done
(cd "$dir" && valgrind -q --tool=callgrind --demangle=no --dump-instr=no --compress-strings=no \
    --callgrind-out-file="$dir/start.callgrind" \
    "$bin/nrv-open" --name p --startsecs 0 --linger 1 -- /usr/bin/true >/dev/null)
# Every function that ran (callgrind marks recursion levels with 'N), only names the binary
# defines (not addresses, not "(below main)").
nm "$bin/nrv-open" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u >"$dir/defined"
sed -n "s/^fn=//p" "$dir/start.callgrind" | sed "s/'[0-9]*\$//" | sort -u >"$dir/ran"
comm -12 "$dir/ran" "$dir/defined" >"$order"
echo "$order: $(wc -l <"$order") functions (of $(wc -l <"$dir/ran") that ran)"
# The binary in target/static was linked with the old list: build it again with the new one.
sh bench/static.sh >/dev/null
echo "target/static rebuilt with it"
