#!/usr/bin/env bash
# The official postgres image's first-start behaviour, in short (tests/container/postgres.Dockerfile).
set -euo pipefail

user=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$user}
port=${PGPORT:-5432}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password_file=$(mktemp)
    printf '%s' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >"$password_file"
    initdb -D "$PGDATA" -U "$user" --pwfile="$password_file" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 >/dev/null
    rm -f "$password_file"
    if [ "$database" != postgres ]; then
        postgres -D "$PGDATA" -c listen_addresses='' -p "$port" &
        pid=$!
        until pg_isready -q -p "$port"; do sleep 0.2; done
        psql -v ON_ERROR_STOP=1 -q -U "$user" -p "$port" -d postgres -c "CREATE DATABASE \"$database\""
        kill -INT "$pid"
        wait "$pid" || true
    fi
    echo "postgres-entrypoint: initialised $PGDATA (user $user, database $database)"
fi
exec "$@"
