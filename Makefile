# One command each on a fresh machine: the targets create .venv and install on demand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := demo-data
DEMO_CASES ?= 5000

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(DEMO_DIR)
	$(BIN)/l2c simulate --cases $(DEMO_CASES) --seed 1 --out $(DEMO_DIR)/l2c.csv
	$(BIN)/l2c validate $(DEMO_DIR)/l2c.csv
	$(BIN)/l2c train $(DEMO_DIR)/l2c.csv
	$(BIN)/l2c promote --target outcome latest
	$(BIN)/l2c promote --target remaining_time latest
	$(BIN)/l2c promote --target payment_delay latest
	$(BIN)/l2c insight $(DEMO_DIR)/l2c.csv --out $(DEMO_DIR)/insight.html
	@echo "Process insight: open $(CURDIR)/$(DEMO_DIR)/insight.html in a browser"
	@echo "Serve the champions: .venv/bin/l2c serve   (API docs at http://127.0.0.1:8000/docs)"
	@echo "MLflow UI: .venv/bin/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}"
	@echo "The cockpit (pipeline, deals, process, models), once l2c serve runs: http://127.0.0.1:8000/"

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# the cockpit's browser tests drive the distribution's Chromium (never `playwright install`)
.PHONY: browser
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
		else echo "the cockpit's browser tests need /usr/bin/chromium: sudo apt-get install chromium"; fi; \
	fi

# the quick loop while developing (< 1 min): no training, MLflow, real logs, fuzzing
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/api.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) mlruns mlflow.db .pytest_cache .hypothesis

# Real public logs (../shared/data) side by side with pm4py: installs the benchmark extra
.PHONY: bench-real
bench-real: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,benchmark]'
	$(BIN)/python benchmarks/real_logs.py --json
