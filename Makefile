# Everything runs inside .venv; `make setup` creates it and installs the project.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= out

.PHONY: setup system-deps test demo bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py
	$(BIN)/pip install -q -e '.[compile,store,dev,bench]'
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

setup: system-deps $(VENV)/.installed

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/python -m compile demo --out $(OUT)/demo

bench: setup
	$(BIN)/python -m benchmarks --out $(OUT)/bench

lint: setup
	$(BIN)/ruff check agent compile store tests benchmarks
	$(BIN)/ruff format --check agent compile store tests benchmarks

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
