#!/usr/bin/env bash
# nrv-center --metrics against the real Prometheus tools (issue 15): a center with two
# processes, `promtool check metrics` on its scrape, then a real `prometheus` on loopback
# scraping it every second, queried through its HTTP API until `nerve_process_up` has 2 series.
#
# Needs promtool and prometheus (Debian's `prometheus` package; .ci/run installs it) and the
# debug binaries (built here). Everything listens on 127.0.0.1, in a temporary directory that
# is removed at the end; every process started here is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/.."

# Bounds: tries of 0.5 s each.
READY_TRIES=40     # 20 s for the center and Prometheus to come up
QUERY_TRIES=120    # 60 s for Prometheus to have scraped both series

for tool in promtool prometheus python3; do
    command -v "$tool" >/dev/null || { echo "metrics-check: $tool is missing (Debian: apt-get install prometheus)" >&2; exit 1; }
done

cargo build -q -p nerve-center -p nerve-open -p nerve-ctl
BIN="$PWD/target/debug"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/nerve-metrics-check.XXXXXX")"
chmod 700 "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# A free loopback port (bound to port 0 and released).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# GET $1; prints the body, fails on a connection error or a status other than 200.
http_get() {
    python3 - "$1" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.stdout.write(r.read().decode())
EOF
}

show_logs() {
    for f in "$WORK"/*.stderr; do
        echo "--- $f" >&2
        tail -n 30 "$f" >&2 || true
    done
}

METRICS="127.0.0.1:$(free_port)"
cd "$WORK"
"$BIN/nrv-center" -e "ipc://$WORK/n.sock" -c "ipc://$WORK/c.sock" -n ci -l nerve.log \
    --metrics "$METRICS" 2>center.stderr &
PIDS+=($!)
for i in $(seq "$READY_TRIES"); do
    [ -S "$WORK/n.sock" ] && break
    sleep 0.5
done
[ -S "$WORK/n.sock" ] || { echo "metrics-check: the center did not bind $WORK/n.sock" >&2; show_logs; exit 1; }
for name in a b; do
    "$BIN/nrv-open" -e "ipc://$WORK/n.sock" --name "$name" -- sleep 300 </dev/null >/dev/null 2>"open-$name.stderr" &
    PIDS+=($!)
done

# Both processes up in the center's own scrape, then promtool's verdict on it.
scrape=""
for i in $(seq "$READY_TRIES"); do
    scrape="$(http_get "http://$METRICS/metrics" 2>/dev/null || true)"
    [ "$(grep -c '^nerve_process_up{.*} 1$' <<<"$scrape" || true)" = 2 ] && break
    sleep 0.5
done
[ "$(grep -c '^nerve_process_up{.*} 1$' <<<"$scrape" || true)" = 2 ] || {
    echo "metrics-check: the scrape of http://$METRICS/metrics does not show 2 processes up:" >&2
    echo "$scrape" >&2
    show_logs
    exit 1
}
echo "$scrape" >scrape.txt
echo "metrics-check: promtool check metrics on $(wc -l <scrape.txt) lines"
promtool check metrics <scrape.txt

# A real Prometheus on loopback, scraping every second.
PROM="127.0.0.1:$(free_port)"
cat >prometheus.yml <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: nerve
    static_configs:
      - targets: ["$METRICS"]
EOF
promtool check config prometheus.yml
prometheus --config.file=prometheus.yml --web.listen-address="$PROM" \
    --storage.tsdb.path="$WORK/tsdb" 2>prometheus.stderr &
PIDS+=($!)
series=""
for i in $(seq "$QUERY_TRIES"); do
    answer="$(http_get "http://$PROM/api/v1/query?query=nerve_process_up" 2>/dev/null || true)"
    series="$(python3 -c '
import json, sys
try:
    r = json.loads(sys.argv[1])["data"]["result"]
except Exception:
    sys.exit(0)
print(len([s for s in r if s["value"][1] == "1"]))' "$answer")"
    [ "$series" = 2 ] && break
    sleep 0.5
done
if [ "$series" != 2 ]; then
    echo "metrics-check: Prometheus on $PROM did not return 2 nerve_process_up series of 1 within $((QUERY_TRIES / 2)) s; last answer: $answer" >&2
    show_logs
    exit 1
fi
echo "metrics-check: Prometheus $PROM scraped $METRICS: $answer"
