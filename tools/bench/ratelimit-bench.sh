#!/usr/bin/env bash
# ratelimit-bench.sh: runs ainbox-bench-ratelimit against private services.
#
# Starts a private Redis in a temporary directory, `ainbox broker` and
# RL_ACTORS ratelimit actor processes, with limits high enough that most
# decisions are admitted (so Redis decides them: the deny cache would
# answer refusals without it), runs the driver with the arguments given,
# and tears everything down. Build first (cmake --build build). Not a
# test: it prints figures.
#
#   tools/bench/ratelimit-bench.sh                       # single vs batched 64, 10 s each
#   tools/bench/ratelimit-bench.sh --batch 1 --batch 16 --gmail
#   RL_ACTORS=2 tools/bench/ratelimit-bench.sh --seconds 20
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/services.sh
ROOT=$PWD
BUILD=${BUILD:-$ROOT/build}
RL_ACTORS=${RL_ACTORS:-1}

TMP=$(mktemp -d /tmp/ainbox-rl-bench.XXXXXX)
REDIS_PORT=$((20000 + RANDOM % 10000))
BROKER_PORT=$((REDIS_PORT + 1)) # the bus takes the two ports after it
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    bench_services_stop "$TMP" "$REDIS_PORT"
    rm -rf "$TMP"
}
trap cleanup EXIT

bench_redis_start "$TMP" "$REDIS_PORT"
bench_broker_env "$BROKER_PORT"
export LOG_LEVEL=${LOG_LEVEL:-warn}
export AINBOX_RATELIMITS=${AINBOX_RATELIMITS:-api.user=100000000/1h/50000000,gmail.user=100000000/1h/50000000,gmail.project=1000000000/1h/500000000}

"$BUILD/deploy/ainbox" broker 2>"$TMP/broker.log" &
pids+=($!)
for i in $(seq "$RL_ACTORS"); do
    "$BUILD/deploy/ainbox" actor ratelimit 2>"$TMP/ratelimit-$i.log" &
    pids+=($!)
done
sleep 1
echo "ratelimit-bench: load $(cut -d' ' -f1-3 /proc/loadavg), $RL_ACTORS ratelimit actor(s)," \
    "$(nproc) cores"
"$BUILD/tools/bench/ainbox-bench-ratelimit" "$@"
redis-cli -p "$REDIS_PORT" info commandstats | grep -E 'cmdstat_(evalsha|eval):' | cut -c 1-90 || true
grep -h -E "WARN|ERROR" "$TMP"/broker.log "$TMP"/ratelimit-*.log | cut -c 25- | sort | uniq -c |
    sort -rn | head -5 || true
