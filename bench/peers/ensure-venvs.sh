#!/usr/bin/env bash
# Creates the peers' own venvs for `make bench-peers` (never Podium's): bench/.venv-bentoml and
# bench/.venv-ray, each with one pinned release and numpy (the model phase), installed with pip.
# Re-running is a no-op once a venv holds its pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
BENTOML_VERSION=1.4.40
RAY_VERSION=2.60.0
NUMPY_VERSION=2.4.6

ensure() {  # ensure <venv dir> <module> <version> <pip requirement>...
    local venv=$1 module=$2 version=$3
    shift 3
    if [ -x "$venv/bin/python" ] && [ "$("$venv/bin/python" -c "import $module, numpy; print($module.__version__, numpy.__version__)" 2>/dev/null)" = "$version $NUMPY_VERSION" ]; then
        return 0
    fi
    echo "[bench] creating $venv with $* (a few minutes the first time)" >&2
    test -x "$venv/bin/python" || "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"
}

ensure .venv-bentoml bentoml "$BENTOML_VERSION" "bentoml==$BENTOML_VERSION" "numpy==$NUMPY_VERSION"
ensure .venv-ray ray "$RAY_VERSION" "ray[serve]==$RAY_VERSION" "numpy==$NUMPY_VERSION"
