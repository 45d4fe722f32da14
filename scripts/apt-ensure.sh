# The frame the scripts/ensure-*.sh scripts share; sourced by them, not run. A tool is used when it
# works here, else its Debian package is installed quietly with apt-get (only as root) and checked again.
#
# The sourcing script defines `found`, which prints what it uses and succeeds when the tool works,
# and, for a tool that can be installed and still not work here, `broken`, which prints why and
# succeeds when that is so. Then it calls
#   apt_ensure NAME PACKAGE MISSING STILL [show]
# NAME: the script's name after "ensure-"; MISSING: what is not found before the install; STILL:
# what is wrong after it; `show`: say what `found` printed after an install too.
# Exits 0 when the tool works (a second run finds it and does nothing), 1 otherwise.

apt_ensure() {
    local name="ensure-$1" package="$2" missing="$3" still="$4" show="${5:-}" what why

    if what="$(found)"; then
        echo "$name: using $what"
        exit 0
    fi

    if declare -F broken >/dev/null && why="$(broken)"; then
        echo "$name: $why" >&2
        exit 1
    fi

    if [[ "$(id -u)" -ne 0 ]]; then
        echo "$name: $missing; install it (e.g. 'sudo apt-get install $package') and re-run" >&2
        exit 1
    fi

    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "$package" >/dev/null

    if what="$(found)"; then
        echo "$name: installed $package via apt-get${show:+ ($what)}"
    else
        echo "$name: apt-get install $package finished but $still" >&2
        exit 1
    fi
}
