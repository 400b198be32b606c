#!/usr/bin/env bash
# Makes sure a PostgreSQL server the tests can use answers, and prints its admin URL (the only
# line on stdout; messages go to stderr). scripts/test.sh exports it as PHOTO_API_TEST_POSTGRES:
#
#   export PHOTO_API_TEST_POSTGRES="$(scripts/ensure-postgres.sh)"
#
# - PHOTO_API_TEST_POSTGRES set: used as it is (an error if it does not answer).
# - Otherwise 127.0.0.1:5432. If nothing answers there, Debian's `postgresql` package is
#   installed (apt-get update first) when missing and its cluster is started.
# - The tests connect as `postgres` over TCP. If that role cannot log in (Debian's default
#   pg_hba.conf wants a password on 127.0.0.1), it is given the password `postgres` — a
#   throwaway test server only; never point this script at a server that matters.
# The role must be allowed to create databases: each test clones its own from a template.
set -euo pipefail

log() { printf '%s\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

HOST=127.0.0.1
PORT=5432
URL="${PHOTO_API_TEST_POSTGRES:-postgres://postgres@$HOST:$PORT/postgres}"

answers() {
    if command -v pg_isready >/dev/null; then
        pg_isready -q -h "$HOST" -p "$PORT"
    else
        (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
    fi
}

can_login() {
    # Without a client we cannot check; the tests will say what is wrong.
    command -v psql >/dev/null || return 0
    PGCONNECT_TIMEOUT=5 psql "$1" -qtAc 'SELECT 1' >/dev/null 2>&1
}

# Runs psql as the postgres OS user over the local socket (peer authentication).
as_postgres_psql() {
    if [ "$(id -u)" -eq 0 ]; then
        su postgres -c "psql -qtAc \"$1\"" >/dev/null
    else
        sudo -u postgres psql -qtAc "$1" >/dev/null
    fi
}

if [ -n "${PHOTO_API_TEST_POSTGRES:-}" ]; then
    if can_login "$URL"; then
        log "PostgreSQL: using PHOTO_API_TEST_POSTGRES"
        printf '%s\n' "$URL"
        exit 0
    fi
    log "PostgreSQL: cannot log in with PHOTO_API_TEST_POSTGRES; unset it to use a local server"
    exit 1
fi

if ! answers; then
    if ! command -v pg_ctlcluster >/dev/null; then
        log "PostgreSQL: nothing answers on $HOST:$PORT; installing Debian's postgresql package"
        $SUDO apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            postgresql postgresql-client >&2
    fi
    # The package creates a cluster; containers without systemd do not start it.
    cluster="$(pg_lsclusters -h 2>/dev/null | head -n1 || true)"
    if [ -z "$cluster" ]; then
        version="$(ls /usr/lib/postgresql | sort -V | tail -n1)"
        log "PostgreSQL: creating cluster $version/main"
        $SUDO pg_createcluster "$version" main >&2
        cluster="$(pg_lsclusters -h | head -n1)"
    fi
    read -r version name _ <<<"$cluster"
    log "PostgreSQL: starting cluster $version/$name"
    $SUDO pg_ctlcluster "$version" "$name" start >&2 || true
    for _ in $(seq 1 60); do
        answers && break
        sleep 0.5
    done
    answers || { log "PostgreSQL did not start on $HOST:$PORT (see pg_lsclusters)"; exit 1; }
fi

if ! can_login "$URL"; then
    # Most likely password authentication on TCP: give the test role a password.
    PW_URL="postgres://postgres:postgres@$HOST:$PORT/postgres"
    if can_login "$PW_URL"; then
        URL="$PW_URL"
    else
        log "PostgreSQL: setting a password for the postgres role (test server)"
        as_postgres_psql "ALTER ROLE postgres WITH PASSWORD 'postgres'" ||
            { log "cannot configure the postgres role; set PHOTO_API_TEST_POSTGRES"; exit 1; }
        URL="$PW_URL"
        can_login "$URL" || { log "PostgreSQL: cannot log in as $URL"; exit 1; }
    fi
fi

log "PostgreSQL: ready at ${URL/:postgres@/:***@}"
printf '%s\n' "$URL"
