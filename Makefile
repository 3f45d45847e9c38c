# Set-up is part of every target: on a fresh machine `make demo` and `make test` are enough.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_VERSION := 3.3.30
LOCALSTACK_VENV := .venv-localstack
LOCALSTACK_STAMP := $(LOCALSTACK_VENV)/.installed
LOCALSTACK_VERSION := 2026.3.0
# LocalStack's runtime needs Python 3.13: pyenv's 3.13 if there is one, else python3.13 on PATH.
PYTHON313 ?= $(shell p=$$(pyenv prefix 3.13 2>/dev/null) && echo "$$p/bin/python" || command -v python3.13)

LAMBDA_PYTHON_VERSION ?= 3.12
LAMBDA_PLATFORM ?= manylinux2014_x86_64

.PHONY: help install demo test lint typecheck unit bench bench-setup lambda-package clean

help:
	@echo "make demo   run the forwarder end to end on the embedded emulator"
	@echo "make test   lint, type-check and run the whole test suite"
	@echo "make bench  benchmark against the original loop and the fastest bare boto3 drain (about 8 min)"

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# checkov pins dependencies of its own, so it lives in a virtualenv of its own.
$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

# LocalStack on the host, for the benchmark's deep queues (moto rescans a queue on every call).
$(LOCALSTACK_STAMP):
	@test -n "$(PYTHON313)" || { echo "bench-setup needs Python 3.13 (pyenv install 3.13, or set PYTHON313)"; exit 2; }
	$(PYTHON313) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet 'localstack-core[runtime]==$(LOCALSTACK_VERSION)' \
		'cbor2<6' 'pyopenssl<26' 'cryptography<47' service_identity
	touch $@

install: $(STAMP)

# `make demo SINK=api` runs it with the HTTP API sink against a local Datadog intake.
SINK ?= dogstatsd
demo: $(STAMP)
	$(BIN)/cloud-job-metrics demo --sink $(SINK)

lint: $(STAMP)
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) $(CHECKOV_STAMP) lint typecheck
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

bench-setup: $(LOCALSTACK_STAMP)

bench: $(STAMP) $(LOCALSTACK_STAMP)
	LOCALSTACK_PYTHON=$(LOCALSTACK_VENV)/bin/python $(BIN)/python -m bench $(BENCH_ARGS)

# The consumer Lambda's zip: the package plus the runtime requirements as wheels for the function's
# runtime and architecture (LAMBDA_PLATFORM=manylinux2014_aarch64 for arm64).
lambda-package: $(STAMP)
	rm -rf build/forwarder build/forwarder.zip
	$(BIN)/python -m pip install --quiet --target build/forwarder --implementation cp \
		--python-version $(LAMBDA_PYTHON_VERSION) --platform $(LAMBDA_PLATFORM) --only-binary=:all: \
		-r requirements.txt
	cp -r app build/forwarder/app
	find build/forwarder -name __pycache__ -prune -exec rm -rf {} +
	cd build/forwarder && ../../$(BIN)/python -m zipfile -c ../forwarder.zip .
	@echo "built build/forwarder.zip"

clean:
	rm -rf build $(VENV) $(CHECKOV_VENV) $(LOCALSTACK_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
