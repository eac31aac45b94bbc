#!/usr/bin/env bash
# edge-bench.sh: the edge under the SSE workload of the issue, beside the peers
# (nginx+nchan, Pushpin, the Node.js reference) measured in the same run.
#
# Ours: private Redis and PostgreSQL, then `ainbox broker`, the actors (events,
# session, ratelimit, cache, monitor, loadgen) and `ainbox edge`, each its own
# process, so the edge's RSS and CPU are its own. For each mode (events: the
# loadgen asks the events actor, one EVENT_PUBLISH_BATCH per 1 ms tick, which
# appends to the Redis log and publishes on the bus; events1: the same, one
# EVENT_PUBLISH per event; bus: the loadgen publishes USER_EVENT itself):
#   1. a fresh edge; RSS idle;
#   2. sse-load holds N streams, every one authenticated by an admin JWT
#      (`?user=%d`, ids 1..N; the same flags as run-peers.sh); RSS held;
#   3. the loadgen publishes 1 event per user per second for PUB_SECS, with
#      rest_probe.py on GET_PATH at REST_RATE req/s meanwhile; the
#      edge's CPU (/proc/PID/stat) and max RSS sampled over that window;
#   4. with the streams still held and publishing over, wrk -t1 -c16 on the
#      same REST route;
# then wrk -t2 -c64 -d10s --latency on the cached page (GET_PATH) with the
# user API limit on (policy raised so that it admits everything: the cost of
# the check is measured, not 429s) and off. Then the shared run-peers.sh for
# the peers at PEER_NS. One table at the end. Build first (cmake --build build).
#
#   tools/bench/edge-bench.sh                  # N=10000, 20 s, both modes, all peers
#   tools/bench/edge-bench.sh -n 1000 -P "1000" -p nginx-nchan -d 10
#   tools/bench/edge-bench.sh -S               # ours only (no peers)
#
# Options: -n N (10000), -d PUB_SECS (20), -m MODES ("events bus"; also events1), -p PEERS
# ("nginx-nchan pushpin+B50 node-express node-express+I"), -P PEER_NS (N),
# -g GET_PATH (default /threads?maxResults=50: the frontend's inbox page, 20 threads seeded by
# seed_mailbox.py), -w WRK_SECS (10), -r REST_RATE (200), -o OUTDIR,
# -S skip the peers. EVENTS_CREDIT sets the events actor's credit (default 32). SHARED_BENCH (../shared/bench) is copied to a temporary
# directory and built there. Every wait is bounded; all traffic is 127.0.0.1.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=${BUILD:-$ROOT/build}
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
source tools/bench/services.sh
N=10000
PUB_SECS=20
MODES="events bus"
PEERS="nginx-nchan pushpin+B50 node-express node-express+I"
PEER_NS=""
GET_PATH='/threads?maxResults=50'
WRK_SECS=10
REST_RATE=200
OUT=/tmp/ainbox-edge-bench/$(date +%Y%m%d-%H%M%S)
SKIP_PEERS=0
while getopts "n:d:m:p:P:g:w:r:o:S" opt; do
    case $opt in
    n) N=$OPTARG ;;
    d) PUB_SECS=$OPTARG ;;
    m) MODES=$OPTARG ;;
    p) PEERS=$OPTARG ;;
    P) PEER_NS=$OPTARG ;;
    g) GET_PATH=$OPTARG ;;
    w) WRK_SECS=$OPTARG ;;
    r) REST_RATE=$OPTARG ;;
    o) OUT=$OPTARG ;;
    S) SKIP_PEERS=1 ;;
    *) sed -n '2,35p' "$0"; exit 2 ;;
    esac
done
PEER_NS=${PEER_NS:-$N}
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }
for f in "$BUILD/deploy/ainbox" "$BUILD/tools/bench/ainbox-loadgen"; do
    [[ -x $f ]] || { echo "edge-bench: $f missing: cmake --build build" >&2; exit 2; }
done

# ------------------------------------------------------------ tools, peers
TMP=$(mktemp -d /tmp/ainbox-edge-bench.XXXXXX)
chmod 755 "$TMP"
cp -r "$SHARED" "$TMP/bench"
# Our streams open with {"type":"connected","ts":<ms>} (the original's contract): sse-load
# would time it as an event with a millisecond stamp. -U '"type":"connected"' counts it
# without timing it; the peers are run without -U, so they measure exactly as before.
patch -s -d "$TMP/bench" -p1 <"$ROOT/tools/bench/sse-load-untimed.patch" ||
    { echo "edge-bench: sse-load-untimed.patch does not apply" >&2; exit 1; }
make -s -C "$TMP/bench" >/dev/null || { echo "edge-bench: building the shared tools failed" >&2; exit 1; }
BENCH=$TMP/bench
# wrk measures our own cached page too (every run, -S or not): without it each of those figures
# came out as '-' on a fresh machine, which installed the peers but not wrk.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
if [[ $SKIP_PEERS == 0 ]]; then
    command -v nginx >/dev/null || missing+=(nginx)
    ls /usr/lib/nginx/modules/ngx_nchan_module.so >/dev/null 2>&1 || missing+=(libnginx-mod-nchan)
    command -v pushpin >/dev/null || missing+=(pushpin)
    command -v npm >/dev/null || missing+=(npm)
fi
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$OUT/apt.log" 2>&1 ||
        log "apt-get install failed (see $OUT/apt.log); what needs it will report '-'"
fi
command -v wrk >/dev/null || log "wrk is missing: every cached-page figure will be '-'"

# ------------------------------------------------------------ our stack
REDIS_PORT=$((20000 + RANDOM % 10000))
PG_PORT=$((REDIS_PORT + 1))
BROKER_PORT=$((REDIS_PORT + 2)) # the bus takes the two ports after it
HTTP_PORT=$((REDIS_PORT + 5))
pids=()
EDGE=""
stop_pid() {
    local p=$1 i=0
    kill -TERM "$p" 2>/dev/null || return 0
    while kill -0 "$p" 2>/dev/null && ((i < 100)); do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
cleanup() {
    [[ -n $EDGE ]] && stop_pid "$EDGE"
    for p in "${pids[@]}"; do stop_pid "$p"; done
    bench_services_stop "$TMP" "$REDIS_PORT"
    rm -rf "$TMP"
}
trap cleanup EXIT

bench_redis_start "$TMP" "$REDIS_PORT"
bench_pg_start "$TMP" "$PG_PORT"

bench_broker_env "$BROKER_PORT"
export HTTP_PORT AINBOX_HTTP_ADDR=127.0.0.1 NODE_ENV=development
export LOG_LEVEL=${LOG_LEVEL:-warn}
export AINBOX_HEALTH_SERVICES=events,session,loadgen
# The user API limit stays on the path, raised so that it refuses nothing.
export AINBOX_RATELIMITS=api.user=1000000000/1h
JWT_ACCESS_SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '/+=')
JWT_REFRESH_SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '/+=')
export JWT_ACCESS_SECRET JWT_REFRESH_SECRET
"$BUILD/deploy/ainbox" migrate >/dev/null

"$BUILD/deploy/ainbox" broker 2>"$OUT/broker.log" &
pids+=($!)
for a in events session ratelimit cache monitor loadgen; do
    # EVENTS_CREDIT: requests the events actor holds at once (AINBOX_WORKER_CREDIT, default 32).
    credit=${AINBOX_WORKER_CREDIT:-32}
    [[ $a == events ]] && credit=${EVENTS_CREDIT:-$credit}
    AINBOX_WORKER_CREDIT=$credit "$BUILD/deploy/ainbox" actor "$a" 2>"$OUT/actor-$a.log" &
    pids+=($!)
done

# wait_health SECONDS: until GET /health is 200 (broker and the services answer)
wait_health() {
    local i=0
    while ((i < $1 * 10)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' -m 1 "http://127.0.0.1:$HTTP_PORT/health") == 200 ]] &&
            return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
# start_edge API_LIMIT: a fresh edge process
start_edge() {
    [[ -n $EDGE ]] && stop_pid "$EDGE"
    AINBOX_API_RATELIMIT=$1 "$BUILD/deploy/ainbox" edge 2>>"$OUT/edge.log" &
    EDGE=$!
    wait_health 30 || { log "the edge did not become healthy (see $OUT/edge.log)"; exit 1; }
    sleep 1
}

# An admin access token (runtime/jwt.h format, minted here with the bench's own
# secret): every stream presents it and the edge verifies it.
ADMIN=$(python3 - "$JWT_ACCESS_SECRET" <<'EOF'
import base64, hashlib, hmac, json, os, sys, time
s = sys.argv[1].encode()
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
h = {"alg": "HS256", "typ": "JWT", "kid": b(hmac.new(s, b"ainbox/jwt-kid/v1", hashlib.sha256).digest()[:6])}
now = int(time.time())
p = {"sub": "1", "sid": "1", "role": "admin", "typ": "access", "iat": now - 5, "exp": now + 7200,
     "jti": b(os.urandom(32))}
m = b(json.dumps(h, separators=(",", ":")).encode()) + "." + b(json.dumps(p, separators=(",", ":")).encode())
print(m + "." + b(hmac.new(s, m.encode(), hashlib.sha256).digest()))
EOF
)

start_edge true
# A real user session (the development sign-in) for the REST routes.
curl -s -m 5 -o /dev/null -c "$TMP/cookies" -H 'Content-Type: application/json' \
    -d '{"email":"bench@bench.example"}' "http://127.0.0.1:$HTTP_PORT/api/v1/dev/session"
USER_TOKEN=$(awk '$6 == "access_token" {print $7}' "$TMP/cookies")
[[ -n $USER_TOKEN ]] || { log "no session from POST /api/v1/dev/session"; exit 1; }
# Its inbox: 20 threads in the store (through the cache actor), so the cached page is a page.
PYTHONPATH=$ROOT/tests/harness /usr/bin/python3 "$ROOT/tools/bench/seed_mailbox.py" "$PG_PORT" \
    "$AINBOX_BROKER" bench@bench.example 20 >>"$OUT/run.log" 2>&1 ||
    log "WARNING: seeding the bench user's inbox failed (see $OUT/run.log)"
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -H "Authorization: Bearer $USER_TOKEN" \
    "http://127.0.0.1:$HTTP_PORT$GET_PATH")
[[ $code == 200 ]] || log "WARNING: GET $GET_PATH answers $code, not 200"

# ------------------------------------------------------------ measurement helpers
kv() { tail -n 1 "$2" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }
rss() { awk '/^VmRSS:/{print $2}' /proc/"$1"/status 2>/dev/null || echo 0; }
cpu_ticks() {
    local t=0 p v
    for p in "$@"; do
        v=$(awk '{print $14+$15+$16+$17}' /proc/"$p"/stat 2>/dev/null)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
sys_ticks() { awk '/^cpu /{b=$2+$3+$4+$7+$8; t=b+$5+$6; print b, t}' /proc/stat; }
HZ=$(getconf CLK_TCK)
load1() { cut -d' ' -f1 /proc/loadavg; }
pct() { awk -v d="$1" -v hz="$HZ" -v t="$2" 'BEGIN{printf "%.0f", 100*d/hz/t}'; }
wrk_fields() { # FILE -> "req/s p50 p99 non2xx"
    awk '/^Requests\/sec:/{r=$2} /^ +50%/{a=$2} /^ +99%/{b=$2} /Non-2xx/{x=$NF}
         END{printf "%s %s %s %s", r ? r : "-", a ? a : "-", b ? b : "-", x ? x : 0}' "$1"
}

OURS=$OUT/ours.tsv
printf 'label\tn\tconnected\tfailed\tdropped\tts_events\texpected\tp50_ms\tp99_ms\tmax_ms\trss_idle_kb\trss_held_kb\trss_load_kb\tkb_per_conn\tedge_cpu_pct\tours_cpu_pct\tsys_busy_pct\tgen_sent\tgen_unsent\tgen_failed\tgen_lag_max_ms\trest_p50_ms\trest_p99_ms\trest_max_ms\trest_non2xx\theld_wrk_rps\theld_wrk_p99\tgen_cpu_s\tramp_s\tload1\n' >"$OURS"
OURS_WRK=$OUT/ours-wrk.tsv
printf 'label\troute\treq_per_s\tp50\tp99\tnon2xx\tedge_cpu_pct\trss_kb\tload1\n' >"$OURS_WRK"

run_sse() {
    local mode=$1 tag=$OUT/ours-$1-n$N label="ainbox-edge($1)"
    start_edge true
    local rss_idle l1 hold=$((PUB_SECS + 7 + WRK_SECS + 5))
    rss_idle=$(rss "$EDGE")
    l1=$(load1)
    rm -f "$tag.ready"
    /usr/bin/time -f 'cpu_user=%U cpu_sys=%S' -o "$tag.load.time" \
        timeout $((hold + 150)) "$BENCH/sse-load" -s 1 -n "$N" -d "$hold" -c 64 -t 30 -T 90 \
        -u "http://127.0.0.1:$HTTP_PORT/api/v1/emails/stream?user=%d" \
        -H "Authorization: Bearer $ADMIN" -U '"type":"connected"' -R "$tag.ready" -L -v >"$tag.load.out" 2>"$tag.load.err" &
    local lpid=$! i=0
    while [[ ! -s $tag.ready ]] && kill -0 "$lpid" 2>/dev/null && ((i < 1200)); do
        sleep 0.1
        i=$((i + 1))
    done
    [[ -s $tag.ready ]] || log "$label: sse-load never became ready"
    local rss_held
    rss_held=$(rss "$EDGE")
    sleep 1 # the last subscriptions reach the publishers
    local c0 a0 s0 t0 names=(broker events session ratelimit cache monitor loadgen redis) per0=() p
    for p in "${pids[@]}" "$(cat "$TMP/redis.pid")"; do per0+=("$(cpu_ticks "$p")"); done
    c0=$(cpu_ticks "$EDGE")
    a0=$(cpu_ticks "$EDGE" "${pids[@]}" "$(cat "$TMP/redis.pid")")
    s0=$(sys_ticks)
    t0=$(date +%s.%N)
    timeout $((PUB_SECS + 60)) "$BUILD/tools/bench/ainbox-loadgen" --users "$N" --first 1 \
        --rate 1 --seconds "$PUB_SECS" --mode "$mode" >"$tag.gen.out" 2>"$tag.gen.err" &
    local gpid=$!
    timeout $((PUB_SECS + 30)) python3 "$ROOT/tools/bench/rest_probe.py" "$HTTP_PORT" "$GET_PATH" \
        "$REST_RATE" "$PUB_SECS" "Authorization: Bearer $USER_TOKEN" >"$tag.rest.out" 2>&1 &
    local rpid=$! max_rss=0 m
    i=0
    while kill -0 "$gpid" 2>/dev/null && ((i < (PUB_SECS + 60) * 2)); do
        m=$(rss "$EDGE")
        ((m > max_rss)) && max_rss=$m
        sleep 0.5
        i=$((i + 1))
    done
    wait "$gpid" 2>/dev/null
    local c1 a1 s1 t1 per=() j=0
    for p in "${pids[@]}" "$(cat "$TMP/redis.pid")"; do
        per+=("${names[j]}=$(pct $(($(cpu_ticks "$p") - per0[j])) "$(awk -v a="$t0" 'BEGIN{"date +%s.%N" | getline b; print b-a}')")")
        j=$((j + 1))
    done
    echo "$label cpu_pct per process: edge=see table ${per[*]}" >>"$OUT/ours-cpu.txt"
    c1=$(cpu_ticks "$EDGE")
    a1=$(cpu_ticks "$EDGE" "${pids[@]}" "$(cat "$TMP/redis.pid")")
    s1=$(sys_ticks)
    t1=$(date +%s.%N)
    wait "$rpid" 2>/dev/null
    # Streams still held, publishing over: wrk on the REST route.
    timeout $((WRK_SECS + 30)) wrk -t1 -c16 -d"${WRK_SECS}s" --latency \
        -H "Authorization: Bearer $USER_TOKEN" "http://127.0.0.1:$HTTP_PORT$GET_PATH" \
        >"$tag.wrk-held.out" 2>&1
    wait "$lpid" 2>/dev/null
    curl -s -m 5 "http://127.0.0.1:$HTTP_PORT/stats" >"$tag.stats.json" || true

    local el connected
    el=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
    connected=$(kv connected "$tag.load.out")
    local kbpc="-" sbusy gencpu
    [[ -n $connected && $connected -gt 0 ]] &&
        kbpc=$(awk -v a="$rss_held" -v b="$rss_idle" -v c="$connected" 'BEGIN{printf "%.2f", (a-b)/c}')
    sbusy=$(awk -v a="$s0" -v b="$s1" 'BEGIN{split(a,x," "); split(b,y," "); if (y[2]-x[2]>0) printf "%.0f", 100*(y[1]-x[1])/(y[2]-x[2]); else print "-"}')
    gencpu=$(tr ' ' '\n' <"$tag.load.time" | awk -F= '/^cpu_(user|sys)=/{s+=$2} END{printf "%.1f", s}')
    read -r wrps _ wp99 _ <<<"$(wrk_fields "$tag.wrk-held.out")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$label" "$N" "${connected:--}" "$(kv failed "$tag.load.out")" "$(kv dropped "$tag.load.out")" \
        "$(kv ts_events "$tag.load.out")" $((N * PUB_SECS)) "$(kv p50_ms "$tag.load.out")" \
        "$(kv p99_ms "$tag.load.out")" "$(kv max_ms "$tag.load.out")" "$rss_idle" "$rss_held" \
        "$max_rss" "$kbpc" "$(pct $((c1 - c0)) "$el")" "$(pct $((a1 - a0)) "$el")" "$sbusy" \
        "$(kv sent "$tag.gen.out")" "$(kv unsent "$tag.gen.out")" "$(kv failed "$tag.gen.out")" \
        "$(kv lag_max_ms "$tag.gen.out")" "$(kv p50_ms "$tag.rest.out")" \
        "$(kv p99_ms "$tag.rest.out")" "$(kv max_ms "$tag.rest.out")" \
        "$(awk -v a="$(kv non2xx "$tag.rest.out")" -v b="$(kv errors "$tag.rest.out")" 'BEGIN{print a+b}')" \
        "$wrps" "$wp99" \
        "$gencpu" "$(kv ramp_s "$tag.load.out")" "$l1" >>"$OURS"
    log "$label $(tail -n 1 "$OURS" | cut -f3-)"
}

run_wrk() {
    local limit=$1 tag=$OUT/ours-wrk-limit-$1 label="ainbox-edge(api-limit $1)"
    start_edge "$limit"
    local url="http://127.0.0.1:$HTTP_PORT$GET_PATH"
    curl -s -o /dev/null -m 2 -H "Authorization: Bearer $USER_TOKEN" "$url"
    local c0 t0 c1 t1 l1
    l1=$(load1)
    c0=$(cpu_ticks "$EDGE")
    t0=$(date +%s.%N)
    timeout $((WRK_SECS + 30)) wrk -t2 -c64 -d"${WRK_SECS}s" --latency \
        -H "Authorization: Bearer $USER_TOKEN" "$url" >"$tag.out" 2>&1
    c1=$(cpu_ticks "$EDGE")
    t1=$(date +%s.%N)
    read -r rps p50 p99 non2xx <<<"$(wrk_fields "$tag.out")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$GET_PATH" "$rps" "$p50" "$p99" "$non2xx" \
        "$(pct $((c1 - c0)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')")" "$(rss "$EDGE")" \
        "$l1" >>"$OURS_WRK"
    log "$label wrk $GET_PATH: $rps req/s p50 $p50 p99 $p99 non2xx $non2xx"
}

{
    echo "date: $(date -Is)"
    echo "host: $(uname -sr), $(nproc) cpus; nofile hard limit $(ulimit -Hn)"
    echo "loadavg at start: $(cat /proc/loadavg)"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo '+dirty')"
    echo "params: n=$N publish_s=$PUB_SECS modes=[$MODES] get=$GET_PATH rest_rate=$REST_RATE" \
        "events_credit=${EVENTS_CREDIT:-${AINBOX_WORKER_CREDIT:-32}}" \
        "wrk_s=$WRK_SECS peers=[$PEERS] peer_ns=[$PEER_NS]"
} | tee "$OUT/env.txt" >&2
for mode in $MODES; do run_sse "$mode"; done
if [[ $WRK_SECS != 0 ]]; then
    run_wrk true
    run_wrk false
fi
stop_pid "$EDGE"
EDGE=""
for p in "${pids[@]}"; do stop_pid "$p"; done
pids=()
grep -h -E "WARN|ERROR" "$OUT"/edge.log "$OUT"/broker.log "$OUT"/actor-*.log 2>/dev/null | cut -c 25- |
    sort | uniq -c | sort -rn | head -8 >"$OUT/warnings.txt"

if [[ $SKIP_PEERS == 0 ]]; then
    log "peers: run-peers.sh -p \"$PEERS\" -n \"$PEER_NS\" -d $PUB_SECS -w $WRK_SECS"
    "$BENCH/run-peers.sh" -p "$PEERS" -n "$PEER_NS" -d "$PUB_SECS" -w "$WRK_SECS" \
        -o "$OUT/peers" >"$OUT/peers.log" 2>&1
fi

# ------------------------------------------------------------ the table
{
    echo
    echo "== SSE: N streams, 1 event/user/s for ${PUB_SECS}s; ours and the peers from this run ($OUT) =="
    echo "   cpu_pct = the server's CPU during publishing (100 = one core); ours: the edge process"
    {
        printf 'server\tn\tconnected\tfailed\tdropped\tevents/expected\tp50_ms\tp99_ms\tmax_ms\tkb_per_conn\tcpu_pct\tRSS_MB idle>held>load\tpub sent|rate/s(unsent)\tload1\n'
        awk -F'\t' 'NR>1{printf "%s\t%s\t%s\t%s\t%s\t%s/%s\t%s\t%s\t%s\t%s\t%s\t%.0f>%.0f>%.0f\t%s(%s)\t%s\n",
            $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$14,$15,$11/1024,$12/1024,$13/1024,$18,$19,$30}' "$OURS"
        [[ -f $OUT/peers/results.tsv ]] &&
            awk -F'\t' 'NR>1{printf "%s\t%s\t%s\t%s\t%s\t%s/%s\t%s\t%s\t%s\t%s\t%s\t%.0f>%.0f>%.0f\t%s(%s)\t%s\n",
            $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$15,$16,$11/1024,$12/1024,$13/1024,$18,$19,$23}' \
                "$OUT/peers/results.tsv"
    } | column -t -s $'\t'
    echo
    echo "== ours only, same rows: all our processes' CPU (edge, broker, actors, Redis), REST meanwhile =="
    cut -f1,16,17,20,21,22,23,24,25,26,27,28 "$OURS" | column -t -s $'\t'
    echo
    echo "== wrk -t2 -c64 -d${WRK_SECS}s --latency on the cached page =="
    {
        printf 'server\troute\treq_per_s\tp50\tp99\tnon2xx\tcpu_pct\tRSS_kB\tload1\n'
        tail -n +2 "$OURS_WRK"
        [[ -f $OUT/peers/wrk.tsv ]] &&
            awk -F'\t' 'NR>1{printf "%s\tpeer get_url\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",$1,$2,$3,$4,$5,$7,$8,$9}' \
                "$OUT/peers/wrk.tsv"
    } | column -t -s $'\t'
    [[ $GET_PATH == /api/v1/session ]] &&
        echo "   (GET /api/v1/session stands in for the cached inbox page, not in this branch yet)"
    echo
    echo "CPU % of our other processes during publishing:"
    cat "$OUT/ours-cpu.txt" 2>/dev/null
    echo "warnings in our logs (count, line):"
    cat "$OUT/warnings.txt"
} | tee "$OUT/summary.txt"
