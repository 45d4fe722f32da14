#!/usr/bin/env bash
# Make sure bubblewrap (bwrap) is installed and works: workers run sandboxed with it by default
# (src/podium/scaling/sandbox.py) and tests/e2e/test_sandbox.py checks what that sandbox holds.
# Called by `make test` before pytest; installs via apt only as root (scripts/apt-ensure.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt-ensure.sh"

found() {
    command -v bwrap >/dev/null 2>&1 &&
        bwrap --ro-bind / / --proc /proc --dev /dev --unshare-pid --die-with-parent --new-session \
              --cap-drop ALL -- /bin/true 2>/dev/null &&
        echo "$(command -v bwrap) ($(bwrap --version))"
}

broken() {
    command -v bwrap >/dev/null 2>&1 &&
        echo "$(command -v bwrap) is installed but cannot build a sandbox here" \
             "(user namespaces disabled? see kernel.unprivileged_userns_clone)"
}

apt_ensure bubblewrap bubblewrap "bwrap not found" "bwrap does not work"
