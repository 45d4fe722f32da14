#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl, postgres) are available,
# because the test suite starts a throwaway cluster with them (tests/pgcluster.py).
# Called by `make test` before pytest. Installs via apt only when running as root.
set -euo pipefail

# Same search as tests/pgcluster.py:find_pg_bin(): PATH first, then the newest
# /usr/lib/postgresql/<ver>/bin.
find_pg_bin() {
    local initdb dir
    if initdb="$(command -v initdb 2>/dev/null)"; then
        dir="$(dirname "$(readlink -f "$initdb")")"
        if [[ -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rn); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

if dir="$(find_pg_bin)"; then
    echo "ensure-postgres: using $dir"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "ensure-postgres: PostgreSQL server binaries not found; install them (e.g. 'sudo apt-get install postgresql') and re-run" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq postgresql >/dev/null

if dir="$(find_pg_bin)"; then
    echo "ensure-postgres: installed postgresql via apt-get ($dir)"
else
    echo "ensure-postgres: apt-get install postgresql finished but initdb is still not found" >&2
    exit 1
fi
