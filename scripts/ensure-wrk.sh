#!/usr/bin/env bash
# The bench's HTTP load generator: Debian's `wrk`, installed when missing.
set -euo pipefail
command -v wrk >/dev/null 2>&1 && exit 0
echo "[bench] installing wrk (apt-get)" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
command -v wrk >/dev/null
