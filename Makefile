# airlock: every target installs what it needs and is safe to run again.
SHELL := /bin/bash
PYTHON ?= python3.11
ANVIL_VERSION := 1.7.1
TOOLS := $(CURDIR)/tools
ANVIL := $(TOOLS)/anvil-$(ANVIL_VERSION)/package/bin/anvil
VENV := $(CURDIR)/.venv
STAMP := $(VENV)/.installed

export AIRLOCK_ANVIL := $(ANVIL)

# pytest-xdist workers: every core (the tests wait on subprocesses and sockets as much as
# they compute). Each worker has its own SoftHSM token, anvils and ports.
TEST_WORKERS ?= auto

.PHONY: demo test test-quick bench chaos lint system-deps deps anvil clean

demo: deps
	$(VENV)/bin/airlock demo

# The tests need PostgreSQL's server programs too (each test process runs a private
# cluster) and Debian's chromium (the browser tests drive it headless); missing, they are
# installed, and a PostgreSQL or browser test that cannot run fails. `make demo` needs
# neither.
test: deps
	@scripts/system-deps.sh postgresql chromium
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/python scripts/check_imports.py
	$(VENV)/bin/python scripts/check_sizes.py
	AIRLOCK_REQUIRE_POSTGRES=1 AIRLOCK_REQUIRE_CHROMIUM=1 \
		$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS)

# The quick part alone, for a developer between edits: no subprocess, kill or chaos tests.
test-quick: deps
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) -m "not slow"

# Every benchmark in turn (the commands are listed in bench/report.py), then the summary
# table at the top of docs/benchmarks.md is rewritten from their figures.
bench: deps
	$(VENV)/bin/python bench/report.py

# The seeded chaos suite: 200 scenarios of combined faults against one broadcaster, then 50
# of three broadcasters on one PostgreSQL queue; invariants checked after each; writes
# docs/reliability.md. Replay one seed: python -m airlock.sim.chaos run --seeds 137
chaos: deps
	@scripts/system-deps.sh postgresql
	$(VENV)/bin/python -m airlock.sim.chaos run --seeds 1-200 --report docs/reliability.md
	$(VENV)/bin/python -m airlock.sim.chaos run --store postgres --broadcasters 3 --seeds 1-50 \
		--report docs/reliability.md

# ruff, mypy (configured in pyproject.toml: --strict), the import rules
# and the size limits of docs/architecture.md.
lint: deps
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/python scripts/check_imports.py
	$(VENV)/bin/python scripts/check_sizes.py

deps: system-deps anvil $(STAMP)

# apt softhsm2 (the embedded HSM) and npm (for the pinned anvil package), each only when
# its command is missing: a Node.js that brought its own npm is left alone.
system-deps:
	@PYTHON=$(PYTHON) scripts/system-deps.sh python-venv softhsm2 npm

anvil: $(ANVIL)

$(ANVIL):
	@mkdir -p $(TOOLS)/anvil-$(ANVIL_VERSION)
	cd $(TOOLS)/anvil-$(ANVIL_VERSION) && npm pack --silent @foundry-rs/anvil-linux-amd64@$(ANVIL_VERSION) >/dev/null \
		&& tar xzf foundry-rs-anvil-linux-amd64-$(ANVIL_VERSION).tgz && rm -f *.tgz
	chmod +x $@
	$@ --version | head -1

# The lock file pins every Python dependency by hash; the stamp re-runs pip when it changes.
$(STAMP): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --require-hashes -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache .hypothesis test-artifacts
