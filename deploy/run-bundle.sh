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
# The demo (development, AINBOX_DEMO=true, the default; never in production): it starts the
# fake Google of tools/fakes (sign-in and the Gmail API) with demo mailboxes
# (AINBOX_DEMO_USERS, AINBOX_DEMO_MESSAGES) that receive a new message every
# AINBOX_DEMO_MAIL_EVERY (10s) and push to the edge's webhook, points sign-in and Gmail at it
# (unless GOOGLE_CLIENT_ID names a real client), and keeps var/demo-tokens current: one line
# per demo identity, "<kind> <email> <access token>", each a live session that
# tools/demo/demo_tokens.py signs in through the real OAuth flow and renews.
#
# Ports, so that two copies run side by side (each with its own RUN_BUNDLE_VAR):
#   HTTP_PORT (3000), BROKER_PORT (5555; the bus takes the next two), REDIS_PORT (26379),
#   PG_PORT (25432), FAKE_PORT (28089, the demo's fake Google).
#
# For tests of this script (tests/e2e/test_first_run.py, test_demo.py), not for users:
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

# The broker's port: the bus uses the next two. Explicit AINBOX_BROKER* settings win.
if [[ -n ${BROKER_PORT:-} ]]; then
    export AINBOX_BROKER=${AINBOX_BROKER:-tcp://127.0.0.1:$BROKER_PORT}
    export AINBOX_BROKER_BIND=${AINBOX_BROKER_BIND:-tcp://127.0.0.1:$BROKER_PORT}
fi
FAKE_PORT=${FAKE_PORT:-28089}

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
    # Each secret once, kept between runs; one added since an older run is appended.
    touch "$VAR/dev-secrets"
    added=()
    for name in JWT_ACCESS_SECRET JWT_REFRESH_SECRET AINBOX_TOKEN_KEY AINBOX_GMAIL_PUSH_TOKEN; do
        grep -q "^$name=" "$VAR/dev-secrets" && continue
        case $name in
        AINBOX_TOKEN_KEY) echo "$name=$(random_hex 32)" ;;
        *) echo "$name=$(random_text 48)" ;;
        esac >>"$VAR/dev-secrets"
        added+=("$name")
    done
    if ((${#added[@]})); then
        say "generated development secrets in $VAR/dev-secrets (kept between runs): ${added[*]}"
    fi
    while IFS='=' read -r name value; do
        [[ $name =~ ^[A-Z_]+$ && -n $value ]] || continue
        if [[ $(setting "$name") == "(unset)" ]]; then export "$name=$value"; fi
    done <"$VAR/dev-secrets"
    umask 022
fi

# ------------------------------------------------------------------ the demo
demo_pids=()
stop_demo() {
    local pid
    for pid in "${demo_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${demo_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    demo_pids=()
}
trap 'stop_demo; stop_services' EXIT

# AINBOX_DEMO_MAIL_EVERY as ainbox reads it (30s, 500ms, 1m, bare seconds) in milliseconds.
duration_ms() {
    local v=$1
    case $v in
    *ms) echo "${v%ms}" ;;
    *s) echo $((${v%s} * 1000)) ;;
    *m) echo $((${v%m} * 60000)) ;;
    *h) echo $((${v%h} * 3600000)) ;;
    *) echo $((v * 1000)) ;;
    esac
}

start_demo() {
    local http=$1 users mail_every n fake_log
    users=$(setting AINBOX_DEMO_USERS)
    n=$(setting AINBOX_DEMO_MESSAGES)
    mail_every=$(duration_ms "$(setting AINBOX_DEMO_MAIL_EVERY)")
    IFS=',' read -r -a demo_users <<<"$users"
    local u args=()
    for u in "${demo_users[@]}"; do
        if [[ ! $u =~ ^[^@[:space:]]+@[^@[:space:]]+$ ]]; then
            say "AINBOX_DEMO_USERS: '$u' is not an address"
            exit 2
        fi
        args+=(--gmail-mailbox "$u:$n:$((${#args[@]} + 1))")
        if ((mail_every > 0)); then args+=(--generate "$u:$mail_every"); fi
        # Watched from the start, as after users.watch: every new message is pushed.
        args+=(--gmail-watch "$u")
    done
    # Our own client at the fake Google: an id and a secret kept with the other secrets.
    if ! grep -q '^DEMO_GOOGLE_CLIENT_SECRET=' "$VAR/dev-secrets"; then
        (umask 077 && echo "DEMO_GOOGLE_CLIENT_SECRET=$(random_text 32)" >>"$VAR/dev-secrets")
    fi
    local secret fake="http://127.0.0.1:$FAKE_PORT"
    secret=$(awk -F= '$1 == "DEMO_GOOGLE_CLIENT_SECRET" { print $2 }' "$VAR/dev-secrets")
    export GOOGLE_CLIENT_ID=ainbox-demo.apps.googleusercontent.test
    export GOOGLE_CLIENT_SECRET=$secret
    if [[ $(setting GOOGLE_CALLBACK_URL) == "(unset)" ]]; then
        export GOOGLE_CALLBACK_URL=http://127.0.0.1:$http/google/callback
    fi
    if [[ $(setting FRONTEND_BASE_URL) == "(unset)" ]]; then
        export FRONTEND_BASE_URL=http://127.0.0.1:$http # sign-in lands on the demo page
    fi
    export AINBOX_GOOGLE_AUTH_URL=$fake/o/oauth2/v2/auth
    export AINBOX_GOOGLE_TOKEN_URL=$fake/token
    export AINBOX_GOOGLE_USERINFO_URL=$fake/v1/userinfo
    # The Gmail API, for the sync actor (its setting, if this build has one).
    if grep -q '^AINBOX_GMAIL_API_URL ' <<<"$CONFIG"; then export AINBOX_GMAIL_API_URL=$fake; fi
    # The webhook's secret, which the fake puts in the push URL as Pub/Sub does (?token=).
    local push_token=${AINBOX_GMAIL_PUSH_TOKEN:-}
    if [[ -z $push_token && -n ${AINBOX_CONFIG:-} ]]; then
        push_token=$(awk -F= '$1 == "AINBOX_GMAIL_PUSH_TOKEN" { print substr($0, index($0, "=") + 1) }' \
            "$AINBOX_CONFIG")
    fi
    fake_log=$VAR/fake-providers.log
    : >"$fake_log"
    python3 "$ROOT/tools/fakes/fake_providers.py" --port "$FAKE_PORT" \
        --client "google:$GOOGLE_CLIENT_ID:$secret:$GOOGLE_CALLBACK_URL" "${args[@]}" \
        --push-url "http://127.0.0.1:$http/webhooks/gmail/notifications" \
        --push-token "$push_token" >>"$fake_log" 2>&1 &
    demo_pids+=($!)
    for _ in $(seq 200); do
        grep -q "^ready $FAKE_PORT" "$fake_log" && break
        if ! kill -0 "${demo_pids[-1]}" 2>/dev/null; then
            say "the fake providers did not start (port $FAKE_PORT in use? set FAKE_PORT):"
            cat "$fake_log" >&2
            exit 1
        fi
        sleep 0.05
    done
    if ! grep -q "^ready $FAKE_PORT" "$fake_log"; then
        say "the fake providers did not say ready within 10 s ($fake_log)"
        exit 1
    fi
    local every="no new mail"
    if ((mail_every > 0)); then every="a new message every $(setting AINBOX_DEMO_MAIL_EVERY)"; fi
    say "demo: fake Google on $fake: ${users//,/, } ($n messages each, $every)"
    rm -f "$VAR/demo-tokens"
    python3 "$ROOT/tools/demo/demo_tokens.py" --edge "http://127.0.0.1:$http" \
        --out "$VAR/demo-tokens" --gmail "$users" --admin "$(setting AINBOX_DEMO_ADMIN)" &
    demo_pids+=($!)
}

HTTP=$(setting HTTP_PORT)
demo=0
if [[ $(setting NODE_ENV) != production && $(setting AINBOX_DEMO) == true ]]; then
    if [[ $(setting GOOGLE_CLIENT_ID) != "(unset)" ]]; then
        say "demo off: GOOGLE_CLIENT_ID is set (a real Google client); AINBOX_DEMO=false hides this"
    else
        demo=1
        start_demo "$HTTP"
    fi
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

say "http://127.0.0.1:$HTTP/health   (Ctrl-C stops)"
if ((demo)); then
    first=${demo_users[0]}
    say "demo: open http://127.0.0.1:$HTTP/ in a browser and sign in with Google as $first" \
        "(the fake Google signs in whichever demo address you give)"
    say "demo: live sessions for scripts, renewed while this runs: $VAR/demo-tokens, e.g."
    say "  curl -N -H \"Authorization: Bearer \$(awk '\$2 == \"$first\" { print \$3 }'" \
        "$VAR/demo-tokens)\" http://127.0.0.1:$HTTP/api/v1/emails/stream"
elif [[ $(setting NODE_ENV) != production ]]; then
    say "sign in: curl -c jar -X POST http://127.0.0.1:$HTTP/api/v1/dev/session" \
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
