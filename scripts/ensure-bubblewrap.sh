#!/usr/bin/env bash
# Make sure bubblewrap (bwrap) is installed and works: workers run sandboxed with it by default
# (src/podium/scaling/sandbox.py) and tests/e2e/test_sandbox.py checks what that sandbox holds.
# Called by `make test` before pytest; installs via apt only as root.
set -euo pipefail

works() {
    command -v bwrap >/dev/null 2>&1 &&
        bwrap --ro-bind / / --proc /proc --dev /dev --unshare-pid --die-with-parent --new-session \
              --cap-drop ALL -- /bin/true 2>/dev/null
}

if works; then
    echo "ensure-bubblewrap: using $(command -v bwrap) ($(bwrap --version))"
    exit 0
fi

if command -v bwrap >/dev/null 2>&1; then
    echo "ensure-bubblewrap: $(command -v bwrap) is installed but cannot build a sandbox here" \
         "(user namespaces disabled? see kernel.unprivileged_userns_clone)" >&2
    exit 1
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "ensure-bubblewrap: bwrap not found; install it (e.g. 'sudo apt-get install bubblewrap') and re-run" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq bubblewrap >/dev/null

if works; then
    echo "ensure-bubblewrap: installed bubblewrap via apt-get"
else
    echo "ensure-bubblewrap: apt-get install bubblewrap finished but bwrap does not work" >&2
    exit 1
fi
