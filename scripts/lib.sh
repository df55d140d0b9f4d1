# Shared by scripts/test and bench/run: installing what is missing, free ports, throwaway
# Postgres clusters, cleanup. Source it after `set -euo pipefail`; it sets WORK and a trap.

log() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# free_port: a loopback port free right now, chosen *below* the kernel's ephemeral range, so
# nothing that binds port 0 (every test server, every outgoing connection) can take it between
# this check and the server's bind, or while a test stops and restarts that server. Another
# script picking ports the same way still can: the start_* helpers below retry on a new port.
free_port() {
    python3 - <<'PY'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    port = random.randrange(10000, max(low, 10001))
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free port below the ephemeral range")
PY
}

APT_UPDATED=""
ensure_command() {  # ensure_command COMMAND DEBIAN_PACKAGE
    command -v "$1" >/dev/null || { log "installing $2 (Debian package)"; apt_install "$2"; }
}
apt_install() {
    if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

WORK="$(mktemp -d /tmp/ferry-work.XXXXXX)"
PG_USER="$(id -un)"

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
ensure_postgres() {
    if [ -z "$(pg_bindir)" ] || [ ! -x "$(pg_bindir)/initdb" ]; then
        log "installing PostgreSQL (Debian package)"
        apt_install postgresql
    fi
    PGBIN="$(pg_bindir)"
    if [ "$(id -u)" = 0 ]; then
        # initdb refuses to run as root: the clusters belong to the postgres user, which exists
        # only once the package is installed.
        chown postgres "$WORK"
        PG_USER=postgres
    fi
}
CLUSTERS=()
PIDS=()
run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# start_cluster NAME PORT [postgres -c options...]: a fresh cluster, trust auth on its socket.
start_cluster() {
    local name=$1 port=$2
    shift 2
    run_pg "$PGBIN/initdb" -D "$WORK/$name" -U "$PG_USER" -A trust --no-sync >/dev/null
    run_pg "$PGBIN/pg_ctl" -D "$WORK/$name" -l "$WORK/$name.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $WORK $*" >/dev/null
    CLUSTERS+=("$name")
}

# start_cluster_free NAME [postgres -c options...]: start_cluster on a free port, tried again on
# another one (at most 5) if the server could not bind it; the port is left in CLUSTER_PORT.
start_cluster_free() {
    local name=$1 port attempt
    shift
    run_pg "$PGBIN/initdb" -D "$WORK/$name" -U "$PG_USER" -A trust --no-sync >/dev/null
    for attempt in 1 2 3 4 5; do
        port="$(free_port)"
        if run_pg "$PGBIN/pg_ctl" -D "$WORK/$name" -l "$WORK/$name.log" -w -t 60 start \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $WORK $*" >/dev/null 2>&1; then
            CLUSTERS+=("$name")
            CLUSTER_PORT=$port
            return 0
        fi
        log "Postgres $name could not start on port $port (attempt $attempt), trying another"
    done
    cat "$WORK/$name.log" >&2
    return 1
}

# start_server_free NAME URL_PATH COMMAND...: runs COMMAND in the background with every `{port}`
# in its arguments replaced by a free port, until it answers http://127.0.0.1:PORT/URL_PATH while
# still running (at most 5 ports; a server that lost its port to another process exits). Sets
# SERVER_PORT and adds the pid to PIDS.
start_server_free() {
    local name=$1 path=$2 port attempt pid arg
    shift 2
    for attempt in 1 2 3 4 5; do
        port="$(free_port)"
        local argv=()
        for arg in "$@"; do argv+=("${arg//\{port\}/$port}"); done
        "${argv[@]}" >>"$WORK/$name.log" 2>&1 &
        pid=$!
        if wait_http "http://127.0.0.1:$port/$path" "$pid" && kill -0 "$pid" 2>/dev/null; then
            PIDS+=("$pid")
            SERVER_PORT=$port
            return 0
        fi
        kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
        log "$name could not start on port $port (attempt $attempt), trying another"
    done
    cat "$WORK/$name.log" >&2
    return 1
}

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    for name in "${CLUSTERS[@]}"; do
        [ -f "$WORK/$name/postmaster.pid" ] && run_pg "$PGBIN/pg_ctl" -D "$WORK/$name" -m immediate stop >/dev/null 2>&1
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# wait_tcp PORT PID: until 127.0.0.1:PORT accepts a connection while PID still runs (bounded: 20 s).
wait_tcp() {
    for _ in $(seq 1 100); do
        kill -0 "$2" 2>/dev/null || return 1
        if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" 2>/dev/null \
            && kill -0 "$2" 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    return 1
}

# wait_http URL [PID]: until it answers (bounded: 20 s), or until process PID has exited.
wait_http() {
    for _ in $(seq 1 100); do
        if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
        if python3 - "$1" 2>/dev/null <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass  # any HTTP answer means it is up
PY
        then return 0; fi
        sleep 0.2
    done
    echo "no answer from $1" >&2
    return 1
}
