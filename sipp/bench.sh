#!/usr/bin/env bash
# Short-call benchmark (issue 8): SIPp short calls INVITE/100/200+SDP/ACK/BYE/200
# (sip-scenarios/load-short-call.xml) at RATE calls/s for SECS seconds against one target on
# 127.0.0.1, started fresh by this script and stopped by PID at the end:
#
#   TARGET=holdline   release build of this tree (cargo build --release), temp data dir
#   TARGET=kamailio   Kamailio 5.6 with sipp/kamailio.cfg (transaction-stateful responder)
#   TARGET=sipp       SIPp's built-in UAS (-sn uas): the harness's own ceiling
#
# Prints one line: offered and achieved cps, successful and failed calls, retransmissions
# (% of the messages SIPp sent: 3 per call), INVITE->200 p50/p99 (SIPp rtd, 1 ms resolution),
# the target's CPU per call (utime+stime of the target's processes over the run / successful
# calls), its peak memory, SIPp watchdog trips (the harness itself was starved), UDP datagrams
# the kernel dropped for a full receive buffer, the 1-minute load average at the start, and
# clean=yes|no (0 failed calls, retransmissions < 0.1 %).
#
#   sipp/bench.sh                                       # holdline, UDP, 500 cps, 30 s
#   TARGET=kamailio TRANSPORT=tcp RATE=1000 sipp/bench.sh
#   TARGET=sipp RATE=4000 CLIENTS=2 sipp/bench.sh       # one SIPp client tops out near 1-4k cps
#
# CLIENTS=2 splits RATE over two SIPp processes (each its own port and TCP connection).
#
# SEED=N (holdline only) starts the gateway with N contacts already waiting (emails keeping
# their places: examples/waiting_bench.rs), and COMMANDS=K then has K callers move queue from
# their page's JSON API while the calls arrive (COMMAND_RATE a second), printing a second line
# with the confirmation latency:
#
#   SEED=10000 COMMANDS=300 RATE=200 sipp/bench.sh
# Work files (SIPp stats, rtt traces, target log) stay in the printed directory when KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
TARGET=${TARGET:-holdline}
TRANSPORT=${TRANSPORT:-udp}
RATE=${RATE:-500}
SECS=${SECS:-30}
CLIENTS=${CLIENTS:-1}
SERVICE=${SERVICE:-support}
SIP_PORT=${SIP_PORT:-15060}
HTTP_PORT=${HTTP_PORT:-18080}
SIPP_PORT=${SIPP_PORT:-15070}     # client i listens on SIPP_PORT+i
MEDIA_PORT=${MEDIA_PORT:-16000}   # client i's (unused) media port is MEDIA_PORT+10*i
KAM_CHILDREN=${KAM_CHILDREN:-4}   # Kamailio workers per listening socket (-n / -N)
KAM_SHM_MB=${KAM_SHM_MB:-2048}  # transactions live up to 32 s (timer J): 6,000 cps needs > 1 GB
# SIPp's own socket buffers (default 64 KiB) drop UDP bursts above ~2,000 cps per client;
# the kernel caps this at net.core.rmem_max / wmem_max.
SIPP_BUFF=${SIPP_BUFF:-4194304}
KEEP=${KEEP:-0}
BUILD=${BUILD:-1}
SEED=${SEED:-0}
SYNC=${SYNC:-full}   # holdline's [data] synchronous: full (fsync per commit) or normal
COMMANDS=${COMMANDS:-0}
COMMAND_RATE=${COMMAND_RATE:-10}
HOLDLINE_BIN=${HOLDLINE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/holdline}

case $TRANSPORT in udp) sipp_t=u1 ;; tcp) sipp_t=t1 ;; *) echo "TRANSPORT=udp|tcp" >&2; exit 2 ;; esac
case $CLIENTS in 1|2) ;; *) echo "CLIENTS=1|2" >&2; exit 2 ;; esac
if [ $((RATE % CLIENTS)) -ne 0 ]; then echo "RATE must divide by CLIENTS" >&2; exit 2; fi
per_client=$((RATE / CLIENTS))
calls_per_client=$((per_client * SECS))

work=$(mktemp -d /tmp/holdline-bench.XXXXXX)
pids=()
stop_all() {
  # Stop what we started, by PID (never a process group: /usr/bin/kill -NEG signals everyone).
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

# SIPp keeps a socket per call on TCP, and holdline an RTP socket per call: raise the soft limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

listening() { # proto port
  ss -Hln"${1:0:1}" "sport = :$2" 2>/dev/null | grep -q .
}

case $TARGET in
  holdline)
    if [ "$BUILD" = 1 ]; then
      cargo build --release --quiet --bin holdline
      [ "$SEED" = 0 ] || cargo build --release --quiet --example waiting_bench
    fi
    helper=$(dirname "$HOLDLINE_BIN")/examples/waiting_bench
    if [ "$SEED" != 0 ]; then "$helper" seed "$work/data" "$SEED" >&2; fi
    # Room for every call the run can have open at once: the benchmark measures throughput,
    # not the configured admission cap (which answers 503 once reached).
    sed -e "s/^max_calls = .*/max_calls = 10000/" -e "s/^rtp_timeout_secs = .*/rtp_timeout_secs = 0/" -e "s/^synchronous = .*/synchronous = \"$SYNC\"/" -e "s/^max_contacts = .*/max_contacts = $((SEED + 200000))/" -e "s/^keep_place_secs = .*/keep_place_secs = ${KEEP_PLACE:-0}/" holdline.toml >"$work/holdline.toml"
    RUST_LOG=${RUST_LOG:-warn} "$HOLDLINE_BIN" --config "$work/holdline.toml" \
      --sip 127.0.0.1:$SIP_PORT --http 127.0.0.1:$HTTP_PORT --data "$work/data" \
      >"$work/target.log" 2>&1 &
    target_pid=$!
    ;;
  kamailio)
    kamailio -DD -E -f "$root/sipp/kamailio.cfg" -Y "$work" -m "$KAM_SHM_MB" -M 16 \
      -n "$KAM_CHILDREN" -N "$KAM_CHILDREN" -a no \
      -l udp:127.0.0.1:$SIP_PORT -l tcp:127.0.0.1:$SIP_PORT >"$work/target.log" 2>&1 &
    target_pid=$!
    ;;
  sipp)
    (cd "$work" && exec sipp -sn uas -i 127.0.0.1 -p $SIP_PORT -t $sipp_t -mp $((MEDIA_PORT + 100)) \
      -buff_size "$SIPP_BUFF" -nostdin -max_socket 60000 >"$work/target.log" 2>&1) &
    target_pid=$!
    ;;
  *) echo "TARGET=holdline|kamailio|sipp" >&2; exit 2 ;;
esac
pids+=("$target_pid")
for _ in $(seq 200); do
  if listening "$TRANSPORT" $SIP_PORT; then break; fi
  kill -0 "$target_pid" 2>/dev/null || { echo "target exited:" >&2; tail -20 "$work/target.log" >&2; exit 1; }
  sleep 0.05
done
listening "$TRANSPORT" $SIP_PORT || { echo "target not listening on $SIP_PORT" >&2; exit 1; }
if [ "$TARGET" = holdline ]; then
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break; sleep 0.05; done
fi

# CPU of the target: every process in its tree (Kamailio forks workers; holdline and SIPp
# are one process whose /proc stat already sums its threads).
tree() { # pid -> pid and all descendants
  local p=$1 c
  echo "$p"
  for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree "$c"; done
}
ticks() { local t=0 p v; for p in $(tree "$target_pid"); do
    v=$(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || echo 0); t=$((t + v)); done; echo $t; }
# Peak memory: VmHWM for one process; for a tree, the sum of proportional set sizes at the end
# (shared memory counted once), since VmHWM summed over Kamailio's workers would count its
# shared pool once per worker.
memory() {
  local ps; ps=$(tree "$target_pid")
  if [ "$(echo "$ps" | wc -l)" -eq 1 ]; then
    awk '/VmHWM/ {printf "%.0fMB(peak)", $2/1024}' /proc/"$target_pid"/status
  else
    for p in $ps; do awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null; done |
      awk '{s += $1} END {printf "%.0fMB(pss,%dprocs)", s/1024, NR}'
  fi
}

tck=$(getconf CLK_TCK)
load=$(cut -d' ' -f1 /proc/loadavg)
# Datagrams the kernel dropped because a UDP socket's receive buffer was full (machine-wide:
# other work on the box counts too; over TCP it should stay 0).
udp_drops() { awk '/^Udp:/ && $2 ~ /^[0-9]+$/ {print $6}' /proc/net/snmp; }
d0=$(udp_drops)
c0=$(ticks); t0=$(date +%s.%N)
cpids=()
for i in $(seq "$CLIENTS"); do
  mkdir -p "$work/c$i"
  (cd "$work/c$i" && exec sipp 127.0.0.1:$SIP_PORT -sf "$root/sip-scenarios/load-short-call.xml" \
    -s "$SERVICE" -i 127.0.0.1 -p $((SIPP_PORT + i)) -mp $((MEDIA_PORT + 10 * i)) -t $sipp_t \
    -r "$per_client" -m "$calls_per_client" -l 30000 -max_socket 60000 -buff_size "$SIPP_BUFF" \
    -recv_timeout 16000 -timeout $((SECS + 60))s -timeout_error -nostdin \
    -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 100 >sipp.out 2>&1) &
  cpids+=($!)
  pids+=($!)
done
if [ "$COMMANDS" != 0 ] && [ "$TARGET" = holdline ]; then
  sleep 2 # the calls are arriving
  "$helper" commands 127.0.0.1:$HTTP_PORT "$work/data/numbers.txt" "$COMMANDS" "$COMMAND_RATE" \
    >"$work/commands.out" 2>&1 || true
fi
for p in "${cpids[@]}"; do wait "$p" || true; done
t1=$(date +%s.%N); c1=$(ticks)
d1=$(udp_drops)
mem=$(memory)

created=0 ok=0 failed=0 retrans=0 stalls=0
for i in $(seq "$CLIENTS"); do
  last=$(tail -n 1 "$work/c$i/stat.csv")
  created=$((created + $(echo "$last" | cut -d';' -f13)))
  ok=$((ok + $(echo "$last" | cut -d';' -f16)))
  failed=$((failed + $(echo "$last" | cut -d';' -f18)))
  retrans=$((retrans + $(echo "$last" | cut -d';' -f58)))
  # SIPp's watchdog trips when its own loop was late (minor: 500 ms): the harness, not the
  # target, was short of CPU, so that run says little about the target.
  stalls=$((stalls + $(echo "$last" | cut -d';' -f66) + $(echo "$last" | cut -d';' -f68)))
done
# Calls never placed (SIPp gave up at -timeout) count as failed too.
expected=$((calls_per_client * CLIENTS))
unplaced=$((expected - created))
[ "$unplaced" -gt 0 ] || unplaced=0
failed=$((failed + unplaced))
pct=$(cat "$work"/c*/*_rtt.csv 2>/dev/null | awk -F';' '$3 == 1 {print $2}' | sort -n |
  awk '{v[NR] = $1} END { if (NR == 0) { print "- -"; exit }
    i50 = int(NR * 0.50 + 0.999); i99 = int(NR * 0.99 + 0.999); print v[i50], v[i99] }')
awk -v target="$TARGET" -v tr="$TRANSPORT" -v cl="$CLIENTS" -v rate="$RATE" -v secs="$SECS" \
  -v t0="$t0" -v t1="$t1" -v ok="$ok" -v failed="$failed" -v retrans="$retrans" -v created="$created" \
  -v pct="$pct" -v stalls="$stalls" -v load="$load" -v drops=$((d1 - d0)) -v c0="$c0" -v c1="$c1" -v tck="$tck" -v mem="$mem" 'BEGIN {
    split(pct, p, " ")
    wall = t1 - t0
    rp = created > 0 ? 100 * retrans / (3 * created) : 0
    cpu_ms = ok > 0 ? 1000 * (c1 - c0) / tck / ok : 0
    clean = (failed == 0 && rp < 0.1 && ok > 0) ? "yes" : "no"
    printf "target=%s transport=%s clients=%d offered=%d achieved=%.0f ok=%d failed=%d retrans=%.3f%% inv200_p50=%.0fms inv200_p99=%.0fms cpu_per_call=%.3fms cpu=%.0f%%core mem=%s secs=%.1f sipp_stalls=%d udp_drops=%d load=%s clean=%s\n",
      target, tr, cl, rate, ok / wall, ok, failed, rp, p[1], p[2], cpu_ms, 100 * (c1 - c0) / tck / wall, mem, wall, stalls, drops, load, clean
  }'
if [ -s "$work/commands.out" ]; then
  echo "waiting=$SEED $(tail -n 1 "$work/commands.out")"
fi
