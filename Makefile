# Every target first runs the idempotent set-up of one ComfyUI host (a second run returns at once).
# HOST picks the host of the test matrix (scripts/hosts.py): 0.33.0, the one people run (default),
# or 0.3.75. `make test-all` runs the suite on both, the current host first.
HOST ?= 0.33.0
export FLUXLAB_HOST := $(HOST)
PY := .venv-$(HOST)/bin/python
PORT ?= 8188

.PHONY: setup test test-all demo serve bench bench-quick

setup:
	@bash scripts/setup_env.sh

test: setup
	@bash scripts/setup_browser.sh
	FLUXLAB_REQUIRE_BROWSER=1 $(PY) -m pytest $(PYTEST_ARGS)

test-all:
	$(MAKE) test HOST=0.33.0
	$(MAKE) test HOST=0.3.75

demo: setup
	$(PY) scripts/demo.py

serve: setup
	$(PY) scripts/serve.py --port $(PORT)

bench: setup
	$(PY) -m bench.run

# The speed part in ~15 min instead of ~50: 2 rounds of 6 timed steps, every configuration, fp32 and bf16.
bench-quick: setup
	$(PY) -m bench.run --rounds 2 --steps 6 --warmup 2
