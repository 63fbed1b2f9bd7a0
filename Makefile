# Every target first runs the idempotent set-up (a second run returns at once).
PY := .venv/bin/python
PORT ?= 8188

.PHONY: setup test demo serve bench

setup:
	@bash scripts/setup_env.sh

test: setup
	@bash scripts/setup_browser.sh
	FLUXLAB_REQUIRE_BROWSER=1 $(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(PY) scripts/demo.py

serve: setup
	$(PY) scripts/serve.py --port $(PORT)

bench: setup
	$(PY) -m bench.run
