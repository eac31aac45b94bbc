#!/usr/bin/env bash
# slowloris-bench.sh: the edge under a slow-loris attack (slowloris.py), on a private bundle.
#
# Starts `ainbox run` with only the monitor and events actors (no Redis or PostgreSQL needed:
# the measured routes are /api/v1/terms, answered by the edge itself, and /health, which asks
# the broker and the monitor actor), on 127.0.0.1 and free ports, waits for /health, runs
# slowloris.py with the arguments given, prints its table, and stops the bundle. Every wait is
# bounded; all traffic is to 127.0.0.x.
#
#   tools/bench/slowloris-bench.sh                       # 2000 slow from 100 sources, 20 s
#   tools/bench/slowloris-bench.sh --slow 500 --sources 1 --seconds 10
#   AINBOX_BIN=/tmp/old/ainbox tools/bench/slowloris-bench.sh   # another build, for comparison
#
# Edge settings come from the environment (e.g. AINBOX_EDGE_CONNECTIONS=1024).
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${AINBOX_BIN:-$PWD/build/deploy/ainbox}
[[ -x $BIN ]] || { echo "slowloris-bench: $BIN missing: cmake --build build" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
BROKER_PORT=$((30000 + RANDOM % 20000))
HTTP_PORT=$((BROKER_PORT + 3))
OUT=$(mktemp -d /tmp/ainbox-slowloris.XXXXXX)
export AINBOX_BROKER=tcp://127.0.0.1:$BROKER_PORT AINBOX_BROKER_BIND=tcp://127.0.0.1:$BROKER_PORT
export HTTP_PORT AINBOX_HTTP_ADDR=127.0.0.1 NODE_ENV=development LOG_LEVEL=${LOG_LEVEL:-warn}
export AINBOX_ACTORS=monitor,events AINBOX_HEALTH_SERVICES=monitor
"$BIN" run 2>"$OUT/bundle.log" &
PID=$!
cleanup() {
    kill -TERM "$PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
    echo "bundle log: $OUT/bundle.log" >&2
}
trap cleanup EXIT
for _ in $(seq 300); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' -m 1 "http://127.0.0.1:$HTTP_PORT/health") == 200 ]] && break
    sleep 0.1
done
echo "edge pid $PID: $(grep -c . /proc/$PID/task/*/comm 2>/dev/null | wc -l) threads," \
    "RSS $(awk '/^VmRSS/{print $2}' /proc/$PID/status) kB" >&2
/usr/bin/python3 tools/bench/slowloris.py --port "$HTTP_PORT" "$@"
echo "after: $(ls /proc/$PID/task | wc -l) threads, RSS $(awk '/^VmRSS/{print $2}' /proc/$PID/status) kB," \
    "$(ls /proc/$PID/fd | wc -l) fds" >&2
