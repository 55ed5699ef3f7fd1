#!/usr/bin/env bash
# Highest clean rate (issue 8): runs sipp/bench.sh at each rate of STEPS, each step against a
# freshly started target, and stops after the first step that is not clean (any failed call,
# or retransmissions >= 0.1 % of the messages sent). Prints bench.sh's line per step, then the
# highest clean rate. TARGET, TRANSPORT, SECS, CLIENTS and the ports pass through to bench.sh.
#
#   sipp/ceiling.sh                                     # holdline, UDP, 30 s steps, 2 clients
#   TARGET=kamailio TRANSPORT=tcp sipp/ceiling.sh
#   TARGET=sipp sipp/ceiling.sh                         # the harness's own ceiling
#   STEPS="250 500 1000" SECS=60 sipp/ceiling.sh
#
# The issue's criterion is 0 failed calls over 60 s: use SECS=60 for the figure of record.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-250 500 1000 2000 4000 6000}
export TARGET=${TARGET:-holdline} TRANSPORT=${TRANSPORT:-udp} SECS=${SECS:-30} CLIENTS=${CLIENTS:-2}
if [ "$TARGET" = holdline ] && [ "${BUILD:-1}" = 1 ]; then cargo build --release --quiet --bin holdline; fi
export BUILD=0
best=0
for rate in $STEPS; do
  line=$(RATE=$rate sipp/bench.sh)
  echo "$line"
  case $line in
    *clean=yes*) best=$rate ;;
    *) break ;;
  esac
done
echo "highest clean rate: target=$TARGET transport=$TRANSPORT clients=$CLIENTS secs=$SECS -> $best cps (steps: $STEPS)"
