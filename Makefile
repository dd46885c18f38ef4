# airlock: every target installs what it needs and is safe to run again.
SHELL := /bin/bash
PYTHON ?= python3.11
ANVIL_VERSION := 1.7.1
TOOLS := $(CURDIR)/tools
ANVIL := $(TOOLS)/anvil-$(ANVIL_VERSION)/package/bin/anvil
VENV := $(CURDIR)/.venv
STAMP := $(VENV)/.installed

export AIRLOCK_ANVIL := $(ANVIL)

.PHONY: demo test bench chaos lint system-deps deps anvil clean

demo: deps
	$(VENV)/bin/airlock demo

test: deps
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/python -m pytest -q

# Every benchmark in turn (the commands are listed in bench/report.py), then the summary
# table at the top of docs/benchmarks.md is rewritten from their figures.
bench: deps
	$(VENV)/bin/python bench/report.py

# The seeded chaos suite: 200 scenarios of combined faults, invariants checked after each;
# writes docs/reliability.md. Replay one seed: python -m airlock.sim.chaos run --seeds 137
chaos: deps
	$(VENV)/bin/python -m airlock.sim.chaos run --seeds 1-200 --report docs/reliability.md

lint: deps
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

deps: system-deps anvil $(STAMP)

# apt softhsm2 (the embedded HSM); npm for the pinned anvil package.
system-deps:
	@if ! command -v softhsm2-util >/dev/null || ! command -v npm >/dev/null; then \
		echo "installing softhsm2 and npm with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 npm >/dev/null; \
	fi

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
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache .hypothesis
