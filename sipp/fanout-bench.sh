#!/usr/bin/env bash
# Live-page fan-out benchmark (issue 8): SUBS server-sent-event pages on as many seeded
# waiting contacts, then one move of the most senior contact changes every place; prints
# examples/waiting_bench.rs's line (the mover's confirmation time, each page's time from
# the command to its event: p50/p99/max) plus the CPU holdline and the client spent in the
# fan-out window.
#
#   sipp/fanout-bench.sh                    # 10,000 contacts, 10,000 pages
#   SUBS=2000 RUNS=3 sipp/fanout-bench.sh   # RUNS moves, one gateway, pages reopened each time
#
# WAITING_BENCH_PERF_OUT=FILE records a perf profile of holdline during the fan-out only.
#
# holdline is started on a fresh data directory seeded by `waiting_bench seed` and stopped
# by PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
SEED=${SEED:-10000}
SUBS=${SUBS:-$SEED}
RUNS=${RUNS:-1}
SIP_PORT=${SIP_PORT:-15360}
HTTP_PORT=${HTTP_PORT:-18380}
KEEP=${KEEP:-0}
BUILD=${BUILD:-1}
bin=${CARGO_TARGET_DIR:-$root/target}/release
HOLDLINE_BIN=${HOLDLINE_BIN:-$bin/holdline} # another build to compare (A/B in one session)

work=$(mktemp -d /tmp/holdline-fanout-bench.XXXXXX)
pids=()
stop_all() {
  # By PID only (never a process group).
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "$KEEP" = 1 ]; then echo "work files: $work" >&2; else rm -rf "$work"; fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

if [ "$BUILD" = 1 ]; then cargo build --release --quiet --bin holdline --example waiting_bench; fi
"$bin/examples/waiting_bench" seed "$work/data" "$SEED" >&2
sed -e "s/^max_calls = .*/max_calls = 10000/" -e "s/^max_contacts = .*/max_contacts = $((SEED + 200000))/" \
  -e "s/^max_connections_per_ip = .*/max_connections_per_ip = 100000/" -e "s/^max_connections = .*/max_connections = 100000/" \
  holdline.toml >"$work/holdline.toml"
RUST_LOG=${RUST_LOG:-warn} "$HOLDLINE_BIN" --config "$work/holdline.toml" \
  --sip 127.0.0.1:$SIP_PORT --http 127.0.0.1:$HTTP_PORT --data "$work/data" >"$work/holdline.log" 2>&1 &
holdline_pid=$!
pids+=("$holdline_pid")
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break; sleep 0.05; done

for run in $(seq "$RUNS"); do
  echo "run $run: $(WAITING_BENCH_PID_OF_SERVER=$holdline_pid "$bin/examples/waiting_bench" fanout 127.0.0.1:$HTTP_PORT "$work/data/numbers.txt" "$SUBS")"
done
