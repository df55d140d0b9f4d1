# Shared by scripts/test and bench/run: installing what is missing, free ports, throwaway
# Postgres clusters, cleanup. Source it after `set -euo pipefail`; it sets WORK and a trap.

log() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

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

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    for name in "${CLUSTERS[@]}"; do
        [ -f "$WORK/$name/postmaster.pid" ] && run_pg "$PGBIN/pg_ctl" -D "$WORK/$name" -m immediate stop >/dev/null 2>&1
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# wait_http URL: until it answers (bounded: 20 s).
wait_http() {
    for _ in $(seq 1 100); do
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
