#!/usr/bin/env bash
# cache-bench.sh: runs ainbox-bench-cache against private services.
#
# Starts a private Redis and PostgreSQL in a temporary directory (ports the
# kernel is unlikely to use), migrates, creates users and accounts 1..N,
# starts `ainbox broker` and CACHE_ACTORS cache actor processes, runs the
# driver with the arguments given, and tears everything down. Build first
# (cmake --build build). Not a test: it prints figures.
#
#   tools/bench/cache-bench.sh                      # 1000 users, 20 s, 1 cache actor
#   CACHE_ACTORS=2 tools/bench/cache-bench.sh --seconds 30 --writes 200
#   KEEP=1 tools/bench/cache-bench.sh ...           # leave the services up to inspect
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=${BUILD:-$ROOT/build}
source tools/bench/services.sh
CACHE_ACTORS=${CACHE_ACTORS:-1}
USERS=1000
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [[ ${args[i]} == --users ]] && USERS=${args[i + 1]}
done

TMP=$(mktemp -d /tmp/ainbox-cache-bench.XXXXXX)
chmod 755 "$TMP"
REDIS_PORT=$((20000 + RANDOM % 10000))
PG_PORT=$((REDIS_PORT + 1))
BROKER_PORT=$((REDIS_PORT + 2)) # the bus takes the two ports after it
pids=()
cleanup() {
    if [[ -n ${KEEP:-} ]]; then
        echo "cache-bench: left running in $TMP: DATABASE_URL=$DATABASE_URL REDIS_URL=$REDIS_URL" \
            "AINBOX_BROKER=$AINBOX_BROKER (pids ${pids[*]})"
        return
    fi
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    bench_services_stop "$TMP" "$REDIS_PORT"
    rm -rf "$TMP"
}
trap cleanup EXIT

bench_redis_start "$TMP" "$REDIS_PORT"
bench_pg_start "$TMP" "$PG_PORT"

bench_broker_env "$BROKER_PORT"
export LOG_LEVEL=${LOG_LEVEL:-warn}
"$BUILD/deploy/ainbox" migrate >/dev/null
psql -X -q "$DATABASE_URL" -c "insert into users (id, email) \
    select g, 'user' || g || '@bench.example' from generate_series(1, $USERS) g; \
    insert into accounts (id, user_id, provider, address) \
    select g, g, 'gmail', 'user' || g || '@bench.example' from generate_series(1, $USERS) g"

"$BUILD/deploy/ainbox" broker 2>"$TMP/broker.log" &
pids+=($!)
for i in $(seq "$CACHE_ACTORS"); do
    "$BUILD/deploy/ainbox" actor cache 2>"$TMP/cache-$i.log" &
    pids+=($!)
done
sleep 1
echo "cache-bench: load $(cut -d' ' -f1-3 /proc/loadavg), $CACHE_ACTORS cache actor(s)," \
    "L1 ${AINBOX_CACHE_L1_TTL_MS:-5000} ms, L2 ${CACHE_TTL:-30} s"
# Seed, then let PostgreSQL know its tables (autovacuum would, a minute later).
"$BUILD/tools/bench/ainbox-bench-cache" "$@" --seed-only
psql -X -q "$DATABASE_URL" -c "analyze"
"$BUILD/tools/bench/ainbox-bench-cache" "$@" --no-seed
grep -h -E "WARN|ERROR" "$TMP"/broker.log "$TMP"/cache-*.log | cut -c 25- | sort | uniq -c | sort -rn | head -5 || true
