#!/usr/bin/env bash
# Load profile: CALLS concurrent callers (default 2000) held on hold for HOLD_MS each,
# arriving at RATE calls/s, against a release build of holdline on 127.0.0.1.
# Prints SIPp's success/failure counts, holdline's CPU use while all calls were up, its peak
# memory, and the announcer's RTP pacing counters from /healthz.
#
#   sipp/load.sh                       # 2000 calls, 50 cps, held 90 s
#   CALLS=500 HOLD_MS=30000 sipp/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-2000}
RATE=${RATE:-50}
HOLD_MS=${HOLD_MS:-90000}
SIP_PORT=${SIP_PORT:-25060}
HTTP_PORT=${HTTP_PORT:-28080}
SIPP_PORT=${SIPP_PORT:-25070}
MEDIA_PORT=${MEDIA_PORT:-26000}
work=$(mktemp -d /tmp/holdline-load.XXXXXX)
# Each call holds an RTP socket: raise the soft open-file limit as far as allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --quiet
cat > "$work/holdline.toml" <<TOML
$(sed -e "s/^max_calls = .*/max_calls = $((CALLS + 100))/" -e "s/^rtp_timeout_secs = .*/rtp_timeout_secs = 0/" holdline.toml)
TOML
./target/release/holdline --config "$work/holdline.toml" --sip 127.0.0.1:$SIP_PORT \
  --http 127.0.0.1:$HTTP_PORT --data "$work/data" >"$work/holdline.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break; sleep 0.1; done
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
sipp 127.0.0.1:$SIP_PORT -sf sip-scenarios/load-caller-holds.xml -s support -i 127.0.0.1 \
  -p $SIPP_PORT -mp $MEDIA_PORT -m "$CALLS" -l "$CALLS" -r "$RATE" -d "$HOLD_MS" \
  -nostdin -timeout $(( HOLD_MS / 1000 + CALLS / RATE + 120 ))s -timeout_error \
  -trace_stat -stf "$work/stat.csv" -fd 5 >"$work/sipp.out" 2>&1 &
sipp_pid=$!
# Wait until every call has been placed, then measure over a window where all are up.
sleep $(( CALLS / RATE + 5 ))
window=$(( HOLD_MS / 1000 - CALLS / RATE - 15 ))
[ "$window" -gt 5 ] || window=5
c0=$(cpu); t0=$(date +%s.%N)
sleep "$window"
c1=$(cpu); t1=$(date +%s.%N)
# RTP actually on the wire to the callers (SIPp's media port), counted by dumpcap for 5 s.
rtp_rate="(dumpcap not installed: apt-get install tshark)"
if command -v dumpcap >/dev/null 2>&1; then
  dumpcap -q -i lo -f "udp and dst port $MEDIA_PORT" -a duration:5 -w "$work/rtp.pcapng" >/dev/null 2>&1 || true
  if [ -s "$work/rtp.pcapng" ]; then
    n=$(capinfos -c -M "$work/rtp.pcapng" | awk -F: '/Number of packets/ {gsub(/ /, "", $2); print $2}')
    rtp_rate="$n packets in 5 s = $((n / 5)) packets/s (expected $((CALLS * 50))/s at 50 per call)"
  fi
fi
health=$(curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" || echo '{}')
wait $sipp_pid && sipp_rc=0 || sipp_rc=$?
rss=$(awk '/VmHWM/ {print $2" "$3}' /proc/$pid/status)
echo "calls=$CALLS rate=$RATE hold_ms=$HOLD_MS"
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v tk="$ticks" \
  'BEGIN { printf "holdline CPU with all calls up: %.1f%% of one core over %.0f s\n", 100*(c1-c0)/tk/(t1-t0), t1-t0 }'
echo "holdline peak RSS: $rss"
echo "RTP to the callers: $rtp_rate"
echo "healthz during the window: $health"
tail -n 1 "$work/stat.csv" | awk -F';' '{print "sipp last stat line (see header in '"$work"'/stat.csv)"}'
grep -E "Successful call|Failed call" "$work/sipp.out" | tail -n 2 || true
echo "sipp exit code: $sipp_rc (0 = every call succeeded); files in $work"
