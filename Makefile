# Set-up is part of every target: on a fresh machine `make demo` and `make test` are enough.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
LOCALSTACK_VENV := .venv-localstack
LOCALSTACK_STAMP := $(LOCALSTACK_VENV)/.installed
LOCALSTACK_VERSION := 2026.3.0
# LocalStack's runtime needs Python 3.13: pyenv's 3.13 if there is one, else python3.13 on PATH.
PYTHON313 ?= $(shell p=$$(pyenv prefix 3.13 2>/dev/null) && echo "$$p/bin/python" || command -v python3.13)

LAMBDA_PYTHON_VERSION ?= 3.12
LAMBDA_PLATFORM ?= manylinux2014_x86_64

# `make image`: the forwarder image for x86_64 and ARM64 hosts (Fargate runs both). A multi-platform
# build cannot be loaded into the classic image store, so it goes to an OCI archive under build/ unless
# IMAGE_OUTPUT says otherwise (IMAGE_OUTPUT=type=registry with IMAGE=<registry>/<name> pushes it).
IMAGE ?= cloud-job-metrics
IMAGE_TAG ?= latest
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
IMAGE_OUTPUT ?= type=oci,dest=build/cloud-job-metrics-image.oci.tar

# Every pip install below checks each file against the sha256 in its lock file (docs/development.md).
PIP_LOCKED := -m pip install --quiet --require-hashes

.PHONY: help install demo test lint typecheck unit bench bench-setup lambda-package image lock clean

help:
	@echo "make demo   run the forwarder end to end on the embedded emulator"
	@echo "make test   lint, type-check and run the whole test suite"
	@echo "make bench  benchmark against the original loop and the fastest bare boto3 drain (about 8 min)"
	@echo "make lock   regenerate the hash-pinned lock files from requirements*.in and pyproject.toml"
	@echo "make image  build the forwarder image for linux/amd64 and linux/arm64 (docker buildx)"

# requirements-dev.txt locks the runtime set, the build backend and the tools together; the package
# itself is then built with that backend (no isolated build environment downloading an unchecked one).
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python $(PIP_LOCKED) -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# checkov pins dependencies of its own, so it lives in a virtualenv of its own, from its own lock.
$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python $(PIP_LOCKED) -r requirements-checkov.txt
	touch $@

# LocalStack on the host, for the benchmark's deep queues (moto rescans a queue on every call). Not
# locked: it is the benchmark's emulator only (not shipped, not in `make test`), needs Python 3.13,
# and LocalStack moves its pins with every release, so it is installed by version like a tool.
$(LOCALSTACK_STAMP):
	@test -n "$(PYTHON313)" || { echo "bench-setup needs Python 3.13 (pyenv install 3.13, or set PYTHON313)"; exit 2; }
	$(PYTHON313) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet 'localstack-core[runtime]==$(LOCALSTACK_VERSION)' \
		'cbor2<6' 'pyopenssl<26' 'cryptography<47' service_identity
	touch $@

# Everything `make test` needs: the project's virtualenv and checkov's.
install: $(STAMP) $(CHECKOV_STAMP)

# `make demo SINK=api` runs it with the HTTP API sink against a local Datadog intake.
SINK ?= dogstatsd
demo: $(STAMP)
	$(BIN)/cloud-job-metrics demo --sink $(SINK)

lint: $(STAMP)
	$(BIN)/ruff check app tests bench scripts
	$(BIN)/ruff format --check app tests bench scripts

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
# runtime and architecture (LAMBDA_PLATFORM=manylinux2014_aarch64 for arm64). The lock holds the
# hashes of every platform's wheels, so the cross-platform install is checked like the others.
lambda-package: $(STAMP)
	rm -rf build/forwarder build/forwarder.zip
	$(BIN)/python $(PIP_LOCKED) --target build/forwarder --implementation cp \
		--python-version $(LAMBDA_PYTHON_VERSION) --platform $(LAMBDA_PLATFORM) --only-binary=:all: \
		-r requirements.txt
	cp -r app build/forwarder/app
	find build/forwarder -name __pycache__ -prune -exec rm -rf {} +
	cd build/forwarder && ../../$(BIN)/python -m zipfile -c ../forwarder.zip .
	@echo "built build/forwarder.zip"

# Resolution needs the package index; ARGS go to uv (ARGS="--upgrade-package boto3", ARGS=--upgrade).
lock: $(STAMP)
	$(BIN)/python scripts/lock.py $(ARGS)

image:
	mkdir -p build
	docker buildx build --platform $(IMAGE_PLATFORMS) --tag $(IMAGE):$(IMAGE_TAG) \
		--output $(IMAGE_OUTPUT) --file Dockerfile .

clean:
	rm -rf build $(VENV) $(CHECKOV_VENV) $(LOCALSTACK_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
