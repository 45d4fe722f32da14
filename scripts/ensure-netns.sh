#!/usr/bin/env bash
# Make sure network namespaces can be made here: tests/e2e/test_netns.py runs each replica, worker
# and PostgreSQL in a namespace of its own (tests/netns.py) with `ip netns` and veth pairs.
# Called by `make test` before pytest; installs iproute2 via apt only as root.
set -euo pipefail

probe="podns-probe-$$"

works() {
    command -v ip >/dev/null 2>&1 && ip netns add "$probe" 2>/dev/null && ip netns delete "$probe"
}

if works; then
    echo "ensure-netns: using $(command -v ip) ($(ip -V))"
    exit 0
fi

if command -v ip >/dev/null 2>&1; then
    echo "ensure-netns: $(command -v ip) cannot make a network namespace here" \
         "(it needs root with CAP_NET_ADMIN and a writable /run/netns)" >&2
    exit 1
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "ensure-netns: ip not found; install it (e.g. 'sudo apt-get install iproute2') and re-run" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq iproute2 >/dev/null

if works; then
    echo "ensure-netns: installed iproute2 via apt-get"
else
    echo "ensure-netns: apt-get install iproute2 finished but ip cannot make a network namespace" >&2
    exit 1
fi
