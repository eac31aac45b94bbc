# services.sh: a private Redis and PostgreSQL for the benchmark scripts, in a scratch directory
# (sourced, not run). Every wait is bounded by the tools themselves (pg_ctl -w, redis daemonize).
#
#   bench_redis_start DIR PORT      redis-server on 127.0.0.1:PORT, no persistence; exports
#                                   REDIS_URL
#   bench_pg_start DIR PORT         PostgreSQL 15 on 127.0.0.1:PORT (socket in DIR/pg), fsync off,
#                                   with an empty database `ainbox`; exports DATABASE_URL
#   bench_broker_env PORT           exports AINBOX_BROKER and AINBOX_BROKER_BIND for a broker on
#                                   127.0.0.1:PORT (its bus on PORT+1, PORT+2)
#   bench_services_stop DIR PORT    stops both (PORT: Redis's); safe if either never started
BENCH_PGBIN=/usr/lib/postgresql/15/bin

bench_redis_start() {
    redis-server --port "$2" --bind 127.0.0.1 --dir "$1" --save "" --appendonly no \
        --daemonize yes --pidfile "$1/redis.pid" --logfile "$1/redis.log"
    export REDIS_URL=redis://127.0.0.1:$2
}

bench_pg_start() {
    local dir=$1 port=$2
    mkdir -p "$dir/pg" && chown postgres:postgres "$dir/pg" && chmod 700 "$dir/pg"
    runuser -u postgres -- "$BENCH_PGBIN/initdb" -D "$dir/pg/data" -A trust -U postgres -E UTF8 \
        --locale=C.UTF-8 --no-sync --no-instructions >/dev/null
    runuser -u postgres -- "$BENCH_PGBIN/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -s \
        -o "-p $port -k $dir/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" \
        start
    psql -X -q "host=127.0.0.1 port=$port user=postgres dbname=postgres" -c "create database ainbox"
    export DATABASE_URL=postgresql://postgres@127.0.0.1:$port/ainbox
}

bench_broker_env() {
    export AINBOX_BROKER=tcp://127.0.0.1:$1
    export AINBOX_BROKER_BIND=$AINBOX_BROKER
}

bench_services_stop() {
    redis-cli -p "$2" shutdown nosave >/dev/null 2>&1 || true
    [[ -d $1/pg/data ]] &&
        runuser -u postgres -- "$BENCH_PGBIN/pg_ctl" -D "$1/pg/data" -m immediate -w -s stop \
            2>/dev/null
    return 0
}
