#!/usr/bin/env bash
# Make sure Debian's chromium is at /usr/bin/chromium: the console's browser tests
# (tests/e2e/test_console*.py) drive it with Playwright. Playwright's own browser download
# is never used. Called by `make test` before pytest; installs via apt only as root
# (scripts/apt-ensure.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt-ensure.sh"

found() {
    [[ -x /usr/bin/chromium ]] && echo /usr/bin/chromium
}

apt_ensure chromium chromium "/usr/bin/chromium not found" "/usr/bin/chromium is still missing"
