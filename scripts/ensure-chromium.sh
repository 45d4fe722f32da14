#!/usr/bin/env bash
# Make sure Debian's chromium is at /usr/bin/chromium: the console's browser tests
# (tests/e2e/test_console*.py) drive it with Playwright. Playwright's own browser download
# is never used. Called by `make test` before pytest; installs via apt only as root.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
    echo "ensure-chromium: using /usr/bin/chromium"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "ensure-chromium: /usr/bin/chromium not found; install it (e.g. 'sudo apt-get install chromium') and re-run" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq chromium >/dev/null

if [[ -x /usr/bin/chromium ]]; then
    echo "ensure-chromium: installed chromium via apt-get"
else
    echo "ensure-chromium: apt-get install chromium finished but /usr/bin/chromium is still missing" >&2
    exit 1
fi
