#!/usr/bin/env bash
# run-bundle.sh: sets up and runs the single-node bundle on this machine.
#
# Installs the packages, builds, starts a private Redis and PostgreSQL under
# ./var (kept between runs: the mail store survives a restart), applies the
# schema, and runs `ainbox run` in the foreground. Ctrl-C stops everything.
# Settings may come from the environment or ./ainbox.env (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VAR=$ROOT/var
PGBIN=/usr/lib/postgresql/15/bin

./deploy/setup-debian.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "run-bundle: built build/deploy/ainbox"

mkdir -p "$VAR/redis"
chmod 755 "$VAR"
REDIS_PORT=${REDIS_PORT:-26379}
PG_PORT=${PG_PORT:-25432}

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$VAR/redis" --save "" \
    --appendonly yes --daemonize yes --pidfile "$VAR/redis/redis.pid" \
    --logfile "$VAR/redis/redis.log"
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

if [[ ! -d $VAR/pg/data ]]; then
    mkdir -p "$VAR/pg" && chown postgres:postgres "$VAR/pg" && chmod 700 "$VAR/pg"
    runuser -u postgres -- "$PGBIN/initdb" -D "$VAR/pg/data" -A trust -U postgres -E UTF8 \
        --locale=C.UTF-8 --no-instructions >/dev/null
fi
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$VAR/pg/data" -l "$VAR/pg/server.log" -w -s \
    -o "-p $PG_PORT -k $VAR/pg -c listen_addresses=127.0.0.1" start
psql -X -q "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres" -tAc \
    "select 1 from pg_database where datname='ainbox'" | grep -q 1 ||
    psql -X -q "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres" -c "create database ainbox"

stop_services() {
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$VAR/pg/data" -m fast -w -s stop || true
}
trap stop_services EXIT

export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:$PG_PORT/ainbox}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}
if [[ -f $ROOT/ainbox.env ]]; then export AINBOX_CONFIG=${AINBOX_CONFIG:-$ROOT/ainbox.env}; fi
if [[ ${NODE_ENV:-development} != production && -z ${AINBOX_DEV_TOKEN:-} ]]; then
    [[ -f $VAR/dev-token ]] || head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$VAR/dev-token"
    AINBOX_DEV_TOKEN=$(cat "$VAR/dev-token")
    export AINBOX_DEV_TOKEN
    echo "run-bundle: development token for the SSE stream is in var/dev-token"
fi
echo "run-bundle: http://127.0.0.1:${HTTP_PORT:-3000}/health   (Ctrl-C stops)"
# Not exec: the trap must stop Redis and PostgreSQL when the bundle ends.
build/deploy/ainbox run &
bundle=$!
trap 'kill -TERM $bundle 2>/dev/null' INT TERM
status=0
while kill -0 "$bundle" 2>/dev/null; do
    wait "$bundle" && status=0 || status=$?
done
exit "$status"
