# One command each: `make demo` (try it), `make test` (everything CI runs; `make test-fast` the
# tests that start no server; `make test-unit`, `make test-integration`, `make test-e2e` one tier
# of tests/), `make docs` (the documentation site, into site/), `make bench`, `make bench-peers`
# (also BentoML and Ray Serve, each in its own venv; not part of `make test`).
# Each creates .venv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo lint docs test test-fast test-unit test-integration test-e2e bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Ray (the optional podium[ray] extra, ~240 MB) for tests/e2e/test_ray.py: its own step and stamp.
RAY_STAMP := $(VENV)/.ray-stamp
$(RAY_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[ray]'
	touch $(RAY_STAMP)

.PHONY: venv-ray
venv-ray: $(RAY_STAMP)

demo: venv
	bash scripts/demo.sh

lint: venv
	$(VENV)/bin/ruff format --check src tests scripts bench
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

# --strict: a broken link or anchor, a page left out of the nav, a PODIUM_* setting missing from (or
# stale in) the configuration reference, or a CLI reference that differs from the command fails the build (and
# so `make test`). NO_MKDOCS_2_WARNING quiets Material's banner (its end of life, May 2027) on each build.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# The client packages' side venvs (tests/sidevenv.py: covalent-cloud, digitalhub, lmnr) are built
# before pytest starts, so no test spends its time-out installing one.
test: venv venv-ray lint docs
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-bubblewrap.sh
	bash scripts/ensure-netns.sh
	$(PY) tests/sidevenv.py
	$(PY) -m pytest --durations=25
	bash scripts/test-typescript.sh

# Everything but the `slow` tests (those that start servers and workers: all of tests/e2e, which
# tests/conftest.py checks), for the edit-test loop: the unit and integration tiers, 464 tests,
# about 40 s of CPU.
test-fast: venv
	bash scripts/ensure-postgres.sh
	$(PY) -m pytest -m "not slow"

# One tier of tests/ each (`make test` runs all three, fastest first): unit needs nothing,
# integration a PostgreSQL to start, e2e also Chromium, bubblewrap, network namespaces and Ray.
test-unit: venv
	$(PY) -m pytest tests/unit

test-integration: venv
	bash scripts/ensure-postgres.sh
	$(PY) -m pytest tests/integration

test-e2e: venv venv-ray
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-bubblewrap.sh
	bash scripts/ensure-netns.sh
	$(PY) tests/sidevenv.py
	$(PY) -m pytest tests/e2e

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
	rm -rf $(VENV) .podium .pytest_cache site bench/.venv-bentoml bench/.venv-ray tests/.venv-*
