#!/usr/bin/env bash
# Side by side (issue 8): for each transport and rate, sipp/bench.sh against Kamailio and then
# holdline back to back (same machine load as far as possible), printed as a Markdown table
# with holdline's CPU per call as a multiple of Kamailio's. Raw bench.sh lines go to stderr.
#
#   sipp/compare.sh                                  # UDP 250 500 1000, 30 s each, 1 client
#   RATES="500" TRANSPORTS="tcp" sipp/compare.sh
#   RATES="1000" SECS=60 CLIENTS=2 sipp/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${RATES:-250 500 1000}
TRANSPORTS=${TRANSPORTS:-udp}
export SECS=${SECS:-30} CLIENTS=${CLIENTS:-1}
if [ "${BUILD:-1}" = 1 ]; then cargo build --release --quiet --bin holdline; fi
export BUILD=0
field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }
row() { # line -> "achieved | ok/failed | retrans | p50/p99 | cpu/call | mem | clean"
  printf '%s | %s/%s | %s | %s/%s | %s | %s | %s' "$(field "$1" achieved)" "$(field "$1" ok)" \
    "$(field "$1" failed)" "$(field "$1" retrans)" "$(field "$1" inv200_p50)" \
    "$(field "$1" inv200_p99)" "$(field "$1" cpu_per_call)" "$(field "$1" mem)" "$(field "$1" clean)"
}
echo "| transport | offered cps | target | achieved cps | ok/failed | retrans | INVITE→200 p50/p99 | CPU per call | memory | clean | CPU ratio vs Kamailio |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for tr in $TRANSPORTS; do
  for rate in $RATES; do
    k=$(TARGET=kamailio TRANSPORT=$tr RATE=$rate sipp/bench.sh); echo "$k" >&2
    h=$(TARGET=holdline TRANSPORT=$tr RATE=$rate sipp/bench.sh); echo "$h" >&2
    ratio=$(awk -v a="$(field "$h" cpu_per_call)" -v b="$(field "$k" cpu_per_call)" \
      'BEGIN {a += 0; b += 0; if (b > 0) printf "%.1f×", a / b; else print "-"}')
    echo "| $tr | $rate | kamailio | $(row "$k") | 1× |"
    echo "| $tr | $rate | holdline | $(row "$h") | $ratio |"
  done
done
