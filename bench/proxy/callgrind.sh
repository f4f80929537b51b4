#!/usr/bin/env bash
# Instructions per request of the bare node:http+undici proxy and the own proxy (from dist/),
# counted by callgrind: exact and independent of the machine's load, unlike throughput or CPU
# time (this machine has no hardware counters for perf). Not a test.
#   bash bench/proxy/callgrind.sh            # bare and this checkout's dist/ (npm run build first)
# Env: TARGETS ("bare js"; js:<checkout> runs another checkout's dist/), CONNECTIONS ("16 64"),
# WARM_REQUESTS of warm-up per target and connection count (40000: the JIT must settle first),
# SECS per measured run (10), ROUNDS (3). Each target runs under valgrind in its own process,
# all at once; for each measured run the counters are zeroed, wrk -t1 runs, and the dump's
# total is divided by the requests wrk counted. A target whose rounds still fall steeply (e.g.
# 1,250,000 then 620,000 then 270,000) was not warm yet: run again with more WARM_REQUESTS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TARGETS=${TARGETS:-"bare js"}
CONNECTIONS=${CONNECTIONS:-"16 64"}
WARM_REQUESTS=${WARM_REQUESTS:-40000}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d /tmp/flotilla-callgrind-XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

listen() { # file -> port, waiting for the LISTENING line
  for _ in $(seq 600); do
    if grep -q LISTENING "$1" 2>/dev/null; then grep -o 'LISTENING [0-9]*' "$1" | head -1 | cut -d' ' -f2; return; fi
    sleep 0.2
  done
  echo "no LISTENING in $1" >&2; exit 1
}

for r in 1 2; do
  PORT=0 REPLICA_ID=r$r node "$here/backend.mjs" >"$work/backend$r.out" &
  pids+=($!)
done
b1=$(listen "$work/backend1.out"); b2=$(listen "$work/backend2.out")
table=$(cat <<EOF
{"version":1,"endpoints":[],"deployments":[{"deploymentId":"bench","name":"m","routing":{"strategy":"round_robin","request_timeout_s":60,"retries":2},"routes":[{"routeId":"route-r1","replicaId":"r1","url":"http://127.0.0.1:$b1","state":"HEALTHY","weight":1},{"routeId":"route-r2","replicaId":"r2","url":"http://127.0.0.1:$b2","state":"HEALTHY","weight":1}],"admission":{"max_concurrent_requests":256,"max_queue_size":1024}}]}
EOF
)

declare -A vpid port prefix
i=0
for t in $TARGETS; do
  i=$((i + 1))
  out="$work/t$i"
  if [ "$t" = bare ]; then
    UPSTREAMS="http://127.0.0.1:$b1,http://127.0.0.1:$b2" valgrind --tool=callgrind \
      --callgrind-out-file="$out.cg" node "$here/bare-proxy.mjs" >"$out.out" 2>"$out.err" &
  else
    checkout="$here/../.."
    case "$t" in js:*) checkout="${t#js:}" ;; esac
    BENCH_TABLE="$table" PROXY_SOURCE="$checkout/dist/src" valgrind --tool=callgrind \
      --callgrind-out-file="$out.cg" node "$here/proxy-process.mjs" >"$out.out" 2>"$out.err" &
  fi
  vpid[$t]=$!
  prefix[$t]="$out.cg"
  pids+=($!)
  port[$t]=$(listen "$out.out")
done

measure() { # target connections -> "instructions/request requests"
  local t=$1 c=$2 v=${vpid[$1]} n total
  callgrind_control -z "$v" >/dev/null 2>&1
  n=$(wrk -t1 -c"$c" -d"${SECS}s" "http://127.0.0.1:${port[$t]}/m/x" | awk '/requests in/ {print $1}')
  callgrind_control -d "$v" >/dev/null 2>&1
  # Each dump is a new file <prefix>.<n>; the newest is this run's.
  total=$(awk '/^summary:/ {print $2}' "$(ls -t "${prefix[$t]}".* | head -1)")
  echo "$((total / n)) instructions/request ($n requests)"
}

for c in $CONNECTIONS; do
  warmers=()
  for t in $TARGETS; do
    (
      done_requests=0
      while [ "$done_requests" -lt "$WARM_REQUESTS" ]; do
        n=$(wrk -t1 -c"$c" -d10s "http://127.0.0.1:${port[$t]}/m/x" | awk '/requests in/ {print $1}')
        done_requests=$((done_requests + n))
      done
    ) &
    warmers+=($!)
  done
  for p in "${warmers[@]}"; do wait "$p" || true; done
  echo "c=$c (${SECS} s runs, ${ROUNDS} rounds, instructions per request)"
  for round in $(seq "$ROUNDS"); do
    for t in $TARGETS; do
      echo "  $t round $round: $(measure "$t" "$c")"
    done
  done
done
