#!/usr/bin/env bash
# run-bundle.sh: sets up and runs the single-node bundle on this machine.
#
# Installs the packages, builds, starts a private Redis and PostgreSQL under
# ./var (kept between runs: the mail store survives a restart), applies the
# schema, and runs `ainbox run`, restarting it if it dies (each restart
# logged with its count). Ctrl-C or SIGTERM stops everything.
# Settings may come from the environment or ./ainbox.env (see README).
#
# In development (NODE_ENV is not production) it generates what sign-in
# needs and keeps it under var/, so sign-in works at once and survives
# restarts: the development token (var/dev-token) and var/dev-secrets
# (JWT_ACCESS_SECRET, JWT_REFRESH_SECRET, AINBOX_TOKEN_KEY), each only if
# neither the environment nor ainbox.env sets it. In production nothing is
# generated: `ainbox run` refuses to start without configured secrets.
#
# For tests of this script (tests/e2e/test_run_bundle.py), not for users:
#   RUN_BUNDLE_SKIP_SETUP=1  no install, no build (build/ must exist)
#   RUN_BUNDLE_NO_STORES=1   no private Redis/PostgreSQL (DATABASE_URL and
#                            REDIS_URL are taken as given, or left unset)
#   RUN_BUNDLE_VAR=DIR       runtime data there instead of ./var
#   RUN_BUNDLE_AINBOX=PATH   the ainbox binary (default build/deploy/ainbox)
#   RUN_BUNDLE_RESTART_MAX=N give up after N restarts within 60 s (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VAR=${RUN_BUNDLE_VAR:-$ROOT/var}
PGBIN=/usr/lib/postgresql/15/bin
AINBOX=${RUN_BUNDLE_AINBOX:-$ROOT/build/deploy/ainbox}
RESTART_MAX=${RUN_BUNDLE_RESTART_MAX:-5}
RESTART_WINDOW_S=60
START_GRACE_S=10

say() { echo "run-bundle: $*" >&2; }

if [[ -z ${RUN_BUNDLE_SKIP_SETUP:-} ]]; then
    ./deploy/setup-debian.sh
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j"$(nproc)" >/dev/null
    say "built build/deploy/ainbox"
fi

mkdir -p "$VAR"
chmod 755 "$VAR"

stop_services() { :; }
if [[ -z ${RUN_BUNDLE_NO_STORES:-} ]]; then
    mkdir -p "$VAR/redis"
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
        psql -X -q "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres" \
            -c "create database ainbox"

    stop_services() {
        redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$VAR/pg/data" -m fast -w -s stop || true
    }
    export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:$PG_PORT/ainbox}
    export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}
fi
trap stop_services EXIT

if [[ -f $ROOT/ainbox.env ]]; then export AINBOX_CONFIG=${AINBOX_CONFIG:-$ROOT/ainbox.env}; fi

# The effective value of a setting (environment, then ainbox.env, then the
# default), as `ainbox config` prints it; "(unset)" if none. A bad
# configuration stops here, with ainbox's own message.
CONFIG=$("$AINBOX" config) || exit 2
setting() { awk -v k="$1" '$1 == k { print $2; exit }' <<<"$CONFIG"; }

random_text() { head -c "$1" /dev/urandom | base64 -w0 | tr -d '/+='; }
random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

if [[ $(setting NODE_ENV) != production ]]; then
    umask 077
    if [[ $(setting AINBOX_DEV_TOKEN) == "(unset)" ]]; then
        [[ -s $VAR/dev-token ]] || random_text 18 >"$VAR/dev-token"
        AINBOX_DEV_TOKEN=$(cat "$VAR/dev-token")
        export AINBOX_DEV_TOKEN
        say "development token (signs in as any user, on every user route) is in $VAR/dev-token"
    fi
    if [[ ! -s $VAR/dev-secrets ]]; then
        {
            echo "JWT_ACCESS_SECRET=$(random_text 48)"
            echo "JWT_REFRESH_SECRET=$(random_text 48)"
            echo "AINBOX_TOKEN_KEY=$(random_hex 32)"
        } >"$VAR/dev-secrets"
        say "generated development secrets in $VAR/dev-secrets (kept between runs)"
    fi
    while IFS='=' read -r name value; do
        [[ $name =~ ^[A-Z_]+$ && -n $value ]] || continue
        if [[ $(setting "$name") == "(unset)" ]]; then export "$name=$value"; fi
    done <"$VAR/dev-secrets"
    umask 022
fi

# The restart loop: `ainbox run` stops by itself only on SIGTERM/SIGINT
# (status 0) or when it cannot go on (status 1: an actor failing beyond
# AINBOX_RESTART_MAX, the broker or the edge failing; 2: a configuration
# error). A crash (a signal, e.g. SIGSEGV or kill -9) or a failure is
# restarted after a second; more than RESTART_MAX restarts within 60 s, a
# configuration error, or a first start that fails within START_GRACE_S,
# and it gives up, as systemd's StartLimit would.
stopping=0
bundle=
on_stop() {
    stopping=1
    if [[ -n $bundle ]]; then kill -TERM "$bundle" 2>/dev/null || true; fi
}
trap on_stop INT TERM

say "http://127.0.0.1:$(setting HTTP_PORT)/health   (Ctrl-C stops)"
if [[ $(setting NODE_ENV) != production ]]; then
    say "sign in: curl -c jar -X POST http://127.0.0.1:$(setting HTTP_PORT)/api/v1/dev/session" \
        "-d '{\"email\":\"me@example.com\"}'   (README.md, Quick start)"
fi
restarts=0
recent=()
status=0
while :; do
    # Not exec: the trap must stop Redis and PostgreSQL when the bundle ends.
    "$AINBOX" run &
    bundle=$!
    started=$(date +%s)
    say "bundle started (pid $bundle)"
    status=0
    while kill -0 "$bundle" 2>/dev/null; do
        wait "$bundle" && status=0 || status=$?
    done
    # A trapped signal (ours: stopping) interrupts `wait` with 128+signal;
    # if the bundle ended just then, its own status is still to be had.
    if ((stopping)); then
        wait "$bundle" 2>/dev/null && status=0 || { s=$?; ((s == 127)) || status=$s; }
    fi
    bundle=
    if ((stopping)); then
        say "stopped (status $status)"
        break
    fi
    if ((status == 0 || status == 2)); then
        say "the bundle exited with status $status; not restarting"
        break
    fi
    # A first start that fails at once (a role could not start: production without its
    # secrets, a port in use) would fail the same way again: say so instead of flapping.
    if ((restarts == 0 && status == 1 && $(date +%s) - started < START_GRACE_S)); then
        say "the bundle could not start (status 1; the reason is logged above); not restarting"
        break
    fi
    why="exit status $status"
    if ((status > 128)); then why="killed by signal $((status - 128)) ($(kill -l $((status - 128))))"; fi
    now=$(date +%s)
    kept=()
    for t in "${recent[@]}"; do ((now - t < RESTART_WINDOW_S)) && kept+=("$t"); done
    recent=("${kept[@]}" "$now")
    if ((${#recent[@]} > RESTART_MAX)); then
        say "the bundle died ($why); $RESTART_MAX restarts within ${RESTART_WINDOW_S}s already: giving up"
        break
    fi
    restarts=$((restarts + 1))
    say "the bundle died ($why); restart #$restarts"
    sleep 1 &
    wait $! || true
    if ((stopping)); then
        say "stopped before restart #$restarts"
        status=0
        break
    fi
done
exit "$status"
