#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl, postgres) are available,
# because the test suite starts a throwaway cluster with them (tests/pgcluster.py).
# Called by `make test` before pytest. Installs via apt only when running as root
# (scripts/apt-ensure.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt-ensure.sh"

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

found() {
    find_pg_bin
}

apt_ensure postgres postgresql "PostgreSQL server binaries not found" "initdb is still not found" show
