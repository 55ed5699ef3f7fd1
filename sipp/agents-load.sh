#!/usr/bin/env bash
# Agents under load: CALLS SIPp callers (sip-scenarios/caller-accepts-refer.xml) arrive at
# RATE calls/s and are REFERred to AGENTS agents whose phones are one SIPp UAS
# (agent-phone-answers.xml); a loop plays the agents, marking each busy agent done through
# the agent API (wrap-up 0, so they are ready again at once). Prints SIPp's counts, holdline's
# CPU and peak memory over the run, the transfer rate, and the caller's wait before CONNECT
# (queue_log holdtime) — against a release build on 127.0.0.1.
#
#   sipp/agents-load.sh                        # 300 callers at 20/s, 20 agents
#   CALLS=1000 RATE=50 AGENTS=50 sipp/agents-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-300}
RATE=${RATE:-20}
AGENTS=${AGENTS:-20}
SIP_PORT=${SIP_PORT:-25160}
HTTP_PORT=${HTTP_PORT:-28180}
CALLER_PORT=${CALLER_PORT:-25170}
PHONE_PORT=${PHONE_PORT:-25180}
MEDIA_PORT=${MEDIA_PORT:-26100}
PHONE_MEDIA_PORT=${PHONE_MEDIA_PORT:-26200}
PASSWORD=load-test-password
work=$(mktemp -d /tmp/holdline-agents-load.XXXXXX)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --quiet

agents=""
for i in $(seq 1 "$AGENTS"); do
  agents+="
[[agent]]
id = \"a$i\"
name = \"Agent $i\"
password = \"$PASSWORD\"
skills = { support = 5 }
uri = \"sip:a$i@127.0.0.1:$PHONE_PORT\"
"
done
# The embedded configuration without its demo agents, with a zero wrap-up and these agents.
{
  sed -e '/^\[\[agent\]\]/,$d' -e "s/^max_calls = .*/max_calls = $((CALLS + 100))/" \
    -e "s/^wrap_up_secs = .*/wrap_up_secs = 0/" -e "s/^rtp_timeout_secs = .*/rtp_timeout_secs = 0/" holdline.toml
  echo "$agents"
} > "$work/holdline.toml"

./target/release/holdline --config "$work/holdline.toml" --sip 127.0.0.1:$SIP_PORT \
  --http 127.0.0.1:$HTTP_PORT --data "$work/data" >"$work/holdline.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  [ -n "${phone_pid:-}" ] && kill "$phone_pid" 2>/dev/null || true
  [ -n "${caller_pid:-}" ] && kill "$caller_pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break; sleep 0.1; done

api() { # agent method path [json]
  local auth
  auth=$(printf '%s:%s' "$1" "$PASSWORD" | base64 -w0)
  curl -s -o /dev/null -w '%{http_code}' -X "$2" -H "Authorization: Basic $auth" \
    -H 'Content-Type: application/json' ${4:+--data "$4"} "http://127.0.0.1:$HTTP_PORT$3"
}
state() { # agent -> state name
  local auth
  auth=$(printf '%s:%s' "$1" "$PASSWORD" | base64 -w0)
  curl -s -H "Authorization: Basic $auth" "http://127.0.0.1:$HTTP_PORT/api/agent/me" |
    sed -n 's/.*"state":"\([a-z_]*\)".*/\1/p' | head -n 1
}
for i in $(seq 1 "$AGENTS"); do
  api "a$i" POST /api/agent/state '{"state":"logged_in"}' >/dev/null
  api "a$i" POST /api/agent/state '{"state":"ready"}' >/dev/null
done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
sipp -sf sip-scenarios/agent-phone-answers.xml -i 127.0.0.1 -p $PHONE_PORT -mp $PHONE_MEDIA_PORT \
  -m "$CALLS" -nostdin -timeout $(( CALLS / RATE + 300 ))s -timeout_error >"$work/phone.out" 2>&1 &
phone_pid=$!
c0=$(cpu); t0=$(date +%s.%N)
sipp 127.0.0.1:$SIP_PORT -sf sip-scenarios/caller-accepts-refer.xml -s support -i 127.0.0.1 \
  -p $CALLER_PORT -mp $MEDIA_PORT -m "$CALLS" -l "$CALLS" -r "$RATE" \
  -nostdin -timeout $(( CALLS / RATE + 300 ))s -timeout_error \
  -trace_err -error_file "$work/caller_errors.log" >"$work/caller.out" 2>&1 &
caller_pid=$!
# The agents: whoever is busy finishes (Done) and, with no wrap-up, is ready again.
while kill -0 "$caller_pid" 2>/dev/null; do
  for i in $(seq 1 "$AGENTS"); do
    if [ "$(state "a$i")" = busy ]; then api "a$i" POST /api/agent/done '{}' >/dev/null; fi
  done
  sleep 0.2
done
wait "$caller_pid" && caller_rc=0 || caller_rc=$?
c1=$(cpu); t1=$(date +%s.%N)
wait "$phone_pid" && phone_rc=0 || phone_rc=$?
rss=$(awk '/VmHWM/ {print $2" "$3}' /proc/$pid/status)
log="$work/data/queue_log"

echo "calls=$CALLS rate=$RATE agents=$AGENTS"
grep -E "Successful call|Failed call" "$work/caller.out" | tail -n 2 | sed 's/^/callers: /' || true
grep -E "Successful call|Failed call" "$work/phone.out" | tail -n 2 | sed 's/^/agent phones: /' || true
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v tk="$ticks" \
  'BEGIN { printf "holdline CPU over the run: %.1f%% of one core over %.1f s\n", 100*(c1-c0)/tk/(t1-t0), t1-t0 }'
echo "holdline peak RSS: $rss"
awk -F'|' '$5=="ENTERQUEUE" && !s {s=$1} $5=="CONNECT" {n++; e=$1} END {
  if (n) printf "CONNECT lines: %d; first ENTERQUEUE to last CONNECT: %d s = %.1f transfers/s\n", n, e-s, (e>s ? n/(e-s) : n) }' "$log"
awk -F'|' '$5=="CONNECT" {print $6}' "$log" | sort -n | awk '{a[NR]=$1; t+=$1} END {
  if (NR) { p = int(NR * 0.95); if (p < 1) p = 1;
    printf "wait before CONNECT (s): mean %.1f, median %s, p95 %s, max %s\n", t/NR, a[int((NR+1)/2)], a[p], a[NR] } }'
grep -c "COMPLETEAGENT" "$log" | sed 's/^/COMPLETEAGENT lines: /'
echo "exit codes: callers $caller_rc, agent phones $phone_rc (0 = every call succeeded); files in $work"
