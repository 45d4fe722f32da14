#!/usr/bin/env bash
# Make sure network namespaces can be made here: tests/e2e/test_netns.py runs each replica, worker
# and PostgreSQL in a namespace of its own (tests/netns.py) with `ip netns` and veth pairs.
# Called by `make test` before pytest; installs iproute2 via apt only as root (scripts/apt-ensure.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt-ensure.sh"

probe="podns-probe-$$"

found() {
    command -v ip >/dev/null 2>&1 && ip netns add "$probe" 2>/dev/null && ip netns delete "$probe" &&
        echo "$(command -v ip) ($(ip -V))"
}

broken() {
    command -v ip >/dev/null 2>&1 &&
        echo "$(command -v ip) cannot make a network namespace here" \
             "(it needs root with CAP_NET_ADMIN and a writable /run/netns)"
}

apt_ensure netns iproute2 "ip not found" "ip cannot make a network namespace"
