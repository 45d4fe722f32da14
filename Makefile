# One command each: `make demo` (try it), `make test` (everything CI runs), `make bench`,
# `make bench-peers` (also BentoML and Ray Serve, each in its own venv; not part of `make test`).
# Each creates .venv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo lint test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Ray (the optional podium[ray] extra, ~240 MB) for tests/test_ray.py: its own step and stamp.
RAY_STAMP := $(VENV)/.ray-stamp
$(RAY_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[ray]'
	touch $(RAY_STAMP)

.PHONY: venv-ray
venv-ray: $(RAY_STAMP)

demo: venv
	bash scripts/demo.sh

lint: venv
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy src

test: venv venv-ray lint
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-bubblewrap.sh
	$(PY) -m pytest
	bash scripts/test-typescript.sh

bench: venv
	bash scripts/ensure-wrk.sh
	$(PY) bench/run.py
	$(PY) bench/scaling.py

.PHONY: bench-peers
bench-peers: venv
	bash scripts/ensure-wrk.sh
	bash bench/peers/ensure-venvs.sh
	$(PY) bench/peers.py

clean:
	rm -rf $(VENV) .podium .pytest_cache bench/.venv-bentoml bench/.venv-ray tests/.venv-covalent
