#!/usr/bin/env bash
# Memory under a sustained flood (issue 10): starts the release gateway on 127.0.0.1 with a
# temporary data directory, floods it with one kind of traffic from SIPp for SECS seconds,
# samples its resident memory (VmRSS) every 5 s, and prints one line per minute (the highest
# sample of that minute) and a summary: RSS after the first minute, at the end, the peak, and
# the growth from the end of minute 1 to the end (flat = within the stated bound).
#
#   KIND=register    REGISTERs without credentials (each challenged; TCP, so the source is
#                    verified and every one reaches the transaction layer)
#   KIND=options     OPTIONS (TCP)
#   KIND=options30k  OPTIONS with a 30 KB text body (TCP; each read whole, then refused 415)
#   KIND=invite      short calls INVITE..BYE (UDP; each admits a contact that ends at once)
#
#   KIND=register RATE=2000 SECS=600 sipp/flood-rss.sh
#
# PORT_BASE moves every port (two floods can run side by side). Stops what it started by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
KIND=${KIND:-options}
RATE=${RATE:-1000}
SECS=${SECS:-600}
PORT_BASE=${PORT_BASE:-25000}
BUILD=${BUILD:-1}
HOLDLINE_BIN=${HOLDLINE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/holdline}
SIP_PORT=$((PORT_BASE + 60))
HTTP_PORT=$((PORT_BASE + 80))
SIPP_PORT=$((PORT_BASE + 70))
MEDIA_PORT=$((PORT_BASE + 100))

work=$(mktemp -d /tmp/holdline-flood.XXXXXX)
pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "$BUILD" = 1 ]; then cargo build --release --quiet --bin holdline; fi
sed -e "s/^max_calls = .*/max_calls = 10000/" -e "s/^rtp_timeout_secs = .*/rtp_timeout_secs = 0/" \
  holdline.toml >"$work/holdline.toml"
RUST_LOG=${RUST_LOG:-error} "$HOLDLINE_BIN" --config "$work/holdline.toml" \
  --sip 127.0.0.1:$SIP_PORT --http 127.0.0.1:$HTTP_PORT --data "$work/data" \
  >"$work/target.log" 2>&1 &
gw=$!
pids+=("$gw")
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break; sleep 0.05; done

# A request SIPp sends and the answer it waits for; the gateway's reply ends the exchange.
request_scenario() { # method expect body_bytes
  local method=$1 expect=$2 bytes=$3 body=""
  if [ "$bytes" -gt 0 ]; then body=$(head -c "$bytes" /dev/zero | tr '\0' 'x'); fi
  cat >"$work/flood.xml" <<EOF
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="flood">
  <send><![CDATA[
$method sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:flood@[local_ip]>;tag=[pid]F[call_number]
To: <sip:[service]@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 $method
Contact: <sip:flood@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Type: text/plain
Content-Length: [len]

$body
]]></send>
  <recv response="$expect" timeout="8000"/>
</scenario>
EOF
}

case $KIND in
  register) request_scenario REGISTER 401 0; scenario=$work/flood.xml; transport=t1; service=ada ;;
  options) request_scenario OPTIONS 200 0; scenario=$work/flood.xml; transport=t1; service=support ;;
  # A body OPTIONS does not take is refused with 415 after it is read whole.
  options30k) request_scenario OPTIONS 415 30000; scenario=$work/flood.xml; transport=t1; service=support ;;
  invite) scenario=$root/sip-scenarios/load-short-call.xml; transport=u1; service=support ;;
  *) echo "KIND=register|options|options30k|invite" >&2; exit 2 ;;
esac

(cd "$work" && exec sipp 127.0.0.1:$SIP_PORT -sf "$scenario" -s "$service" -i 127.0.0.1 \
  -p $SIPP_PORT -mp $MEDIA_PORT -t $transport -r "$RATE" -m $((RATE * SECS)) -l 20000 \
  -max_socket 60000 -buff_size 4194304 -timeout $((SECS + 30))s -nostdin \
  -trace_stat -stf stat.csv -fd 5 >sipp.out 2>&1) &
sipp_pid=$!
pids+=("$sipp_pid")

rss() { awk '/^VmRSS/ {printf "%.0f", $2/1024}' /proc/"$gw"/status 2>/dev/null || echo 0; }
echo "flood $KIND at $RATE/s for $SECS s (load $(cut -d' ' -f1 /proc/loadavg))"
start=$(date +%s)
minute_max=0; minute=1; after_first=0; peak=0; last=0
while kill -0 "$sipp_pid" 2>/dev/null; do
  sleep 5
  now=$(date +%s)
  r=$(rss); last=$r
  [ "$r" -gt "$peak" ] && peak=$r
  [ "$r" -gt "$minute_max" ] && minute_max=$r
  if [ $((now - start)) -ge $((minute * 60)) ]; then
    printf "minute %2d  RSS %5d MB\n" "$minute" "$minute_max"
    [ "$minute" = 1 ] && after_first=$r
    minute=$((minute + 1)); minute_max=0
  fi
  if [ $((now - start)) -gt $((SECS + 40)) ]; then break; fi
done
wait "$sipp_pid" 2>/dev/null || true
ok=$(tail -1 "$work/stat.csv" 2>/dev/null | awk -F';' '{print $16}')
failed=$(tail -1 "$work/stat.csv" 2>/dev/null | awk -F';' '{print $18}')
alive=yes; kill -0 "$gw" 2>/dev/null || alive=no
echo "summary: kind=$KIND rate=$RATE secs=$SECS successful=${ok:-?} failed=${failed:-?} rss_after_1min=${after_first}MB rss_end=${last}MB rss_peak=${peak}MB growth_after_1min=$((last - after_first))MB gateway_alive=$alive"
