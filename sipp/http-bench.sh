#!/usr/bin/env bash
# Web read benchmark (issue 8): requests/s and latency p50/p99 (wrk) of
#   bare     examples/bare_http.rs, a bare axum 0.8 page on the same runtime (the reference),
#            padded to the size of holdline's /c/N page
#   page     holdline GET /c/NUMBER            for a caller parked on hold
#   api      holdline GET /api/contacts/NUMBER for the same caller
# first idle, then while SIPp short calls arrive at CALL_RATE calls/s (sipp/bench.sh's
# scenario), each row with its ratio to the bare page measured in the same phase. holdline and
# bare_http both run for the whole script (release builds) and are stopped by PID at the end.
#
#   sipp/http-bench.sh                      # 10 s per URL, idle and at 300 cps
#   SECS=20 CALL_RATE=1000 CONNS=64 sipp/http-bench.sh
#   CALL_RATE=0 sipp/http-bench.sh          # idle only
#
# Needs wrk (Debian: apt-get install wrk; installed here when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
SECS=${SECS:-10}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
CALL_RATE=${CALL_RATE:-300}
SIP_PORT=${SIP_PORT:-15160}
HTTP_PORT=${HTTP_PORT:-18180}
BARE_PORT=${BARE_PORT:-18190}
SIPP_PORT=${SIPP_PORT:-15170}
MEDIA_PORT=${MEDIA_PORT:-16100}
KEEP=${KEEP:-0}
BUILD=${BUILD:-1}
bin=${CARGO_TARGET_DIR:-$root/target}/release
HOLDLINE_BIN=${HOLDLINE_BIN:-$bin/holdline} # another build to compare (A/B in one session)

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
  else echo "wrk not found: apt-get install wrk" >&2; exit 1; fi
fi

work=$(mktemp -d /tmp/holdline-http-bench.XXXXXX)
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

if [ "$BUILD" = 1 ]; then cargo build --release --quiet --bin holdline --example bare_http; fi

sed -e "s/^max_calls = .*/max_calls = 10000/" -e "s/^rtp_timeout_secs = .*/rtp_timeout_secs = 0/" holdline.toml >"$work/holdline.toml"
RUST_LOG=${RUST_LOG:-warn} "$HOLDLINE_BIN" --config "$work/holdline.toml" \
  --sip 127.0.0.1:$SIP_PORT --http 127.0.0.1:$HTTP_PORT --data "$work/data" >"$work/holdline.log" 2>&1 &
pids+=($!)
holdline_pid=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break; sleep 0.05; done

# Park one caller on hold for the whole run; its contact number is in the 200's Call-Info.
(cd "$work" && exec sipp 127.0.0.1:$SIP_PORT -sf "$root/sip-scenarios/load-caller-holds.xml" \
  -s support -i 127.0.0.1 -p $SIPP_PORT -mp $MEDIA_PORT -m 1 -d 86400000 -nostdin \
  -trace_msg -message_file parked.log >"$work/parked.out" 2>&1) &
pids+=($!)
number=
for _ in $(seq 200); do
  number=$(grep -oE '/c/[0-9]{12}' "$work/parked.log" 2>/dev/null | head -n 1 | cut -c4- || true)
  [ -n "$number" ] && break
  sleep 0.05
done
[ -n "$number" ] || { echo "no parked caller (see $work)" >&2; KEEP=1; exit 1; }
page_url="http://127.0.0.1:$HTTP_PORT/c/$number"
api_url="http://127.0.0.1:$HTTP_PORT/api/contacts/$number"
page_bytes=$(curl -sf -o /dev/null -w '%{size_download}' "$page_url")
api_bytes=$(curl -sf -o /dev/null -w '%{size_download}' "$api_url")

"$bin/examples/bare_http" 127.0.0.1:$BARE_PORT "$page_bytes" >"$work/bare.log" 2>&1 &
pids+=($!)
bare_pid=$!
for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$BARE_PORT/" && break; sleep 0.05; done
bare_url="http://127.0.0.1:$BARE_PORT/"

echo "parked contact $number; /c/N page $page_bytes bytes, /api/contacts/N $api_bytes bytes, bare page $page_bytes bytes"
echo "wrk -t$THREADS -c$CONNS -d${SECS}s --latency; ratios against the bare page in the same phase"
echo "us/req: the server process's CPU (utime+stime, all threads) per request answered; under"
echo "calls holdline's figure includes its SIP work during the run, the bare server's does not"
printf '%-6s %-6s %12s %10s %10s %8s %7s %8s\n' phase url req/s p50 p99 errors ratio us/req
tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }

measure() { # phase name url server_pid -> prints a row, sets $last_rps
  local out rps p50 p99 errs c0 c1 reqs
  c0=$(cpu_ticks "$4")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency "$3")
  c1=$(cpu_ticks "$4")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  # Non-2xx responses plus socket errors (connect, read, write, timeout: wrk gives up after 2 s).
  errs=$(echo "$out" | awk '/Non-2xx/ {n += $NF}
    /Socket errors/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) n += $i + 0} END {print n + 0}')
  last_rps=$rps
  local ratio=1.00
  if [ "$2" != bare ]; then ratio=$(awk -v a="$rps" -v b="$bare_rps" 'BEGIN {printf "%.2f", a / b}'); fi
  local us
  us=$(awk -v c=$((c1 - c0)) -v t="$tck" -v n="$reqs" 'BEGIN {printf "%.1f", (n > 0 ? c * 1e6 / t / n : 0)}')
  printf '%-6s %-6s %12s %10s %10s %8s %7s %8s\n' "$1" "$2" "$rps" "$p50" "$p99" "$errs" "${ratio}x" "$us"
}

phase() {
  measure "$1" bare "$bare_url" "$bare_pid"; bare_rps=$last_rps
  measure "$1" page "$page_url" "$holdline_pid"
  measure "$1" api "$api_url" "$holdline_pid"
}

phase idle
if [ "$CALL_RATE" -gt 0 ]; then
  # Enough calls to outlast the three measurements; stopped by PID when they are done.
  (cd "$work" && exec sipp 127.0.0.1:$SIP_PORT -sf "$root/sip-scenarios/load-short-call.xml" \
    -s support -i 127.0.0.1 -p $((SIPP_PORT + 1)) -mp $((MEDIA_PORT + 10)) -r "$CALL_RATE" \
    -m $((CALL_RATE * (3 * SECS + 30))) -recv_timeout 16000 -nostdin \
    -trace_stat -stf calls.csv -fd 1 >"$work/calls.out" 2>&1) &
  load_pid=$!
  pids+=("$load_pid")
  sleep 2 # let the call rate settle before measuring
  phase "${CALL_RATE}cps"
  last=$(tail -n 1 "$work/calls.csv")
  echo "SIPp load during that phase: $(echo "$last" | cut -d';' -f16) successful, $(echo "$last" | cut -d';' -f18) failed calls, $(echo "$last" | cut -d';' -f58) retransmissions"
fi
