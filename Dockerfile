# syntax=docker/dockerfile:1
# The cloud-job-metrics forwarder: drains the SQS queue, reads each job-metadata
# object from S3 and sends gauges and an event to a datadog-agent over DogStatsD.
#
#   docker build -t cloud-job-metrics .
#   make image                                   # linux/amd64 and linux/arm64 (docker buildx)
#   docker run --rm -e SQS_QUEUE_URL=... -e DD_AGENT_HOST=... cloud-job-metrics
#   docker run --rm cloud-job-metrics check      # preflight instead of drain
#
# No HEALTHCHECK: `drain` is a batch job that runs until the queue is empty and
# exits, and its exit code (0 all forwarded, 1 some rejected or retried, 2 bad
# configuration) is the health signal the scheduler acts on. A probe against a
# process that is meant to end would only report "starting" or "exited". For
# `drain --follow`, liveness comes from the restart policy and the forwarder's
# own metrics in Datadog.

# Patch-level tag so a rebuild does not silently change the interpreter; bump
# it on purpose (Dockerfile-tests uses the same base).
FROM python:3.12.11-slim-bookworm

# No .pyc files in the image layers (the code is read-only for the runtime
# user anyway) and log lines reach `docker logs` as they are written.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed, unprivileged identity: the forwarder needs no root to talk to AWS or
# to a DogStatsD socket (the agent creates it writable by every user).
RUN groupadd --system --gid 10001 forwarder \
    && useradd --system --uid 10001 --gid forwarder --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin forwarder

WORKDIR /opt/cloud-job-metrics

# Dependencies first, from the lock files, so editing the code does not
# invalidate this (slowest) layer. Every file is checked against the sha256 the
# lock holds for it, on either architecture (the locks hash every platform's
# wheels). The build backend comes from its own lock, for the step below.
COPY requirements.txt requirements-build.txt ./
RUN pip install --no-cache-dir --require-hashes \
        --requirement requirements.txt --requirement requirements-build.txt

# Then the package itself, built with that backend rather than one fetched into
# an isolated build environment; its dependencies are already in place, so
# --no-deps guarantees nothing unpinned sneaks in. README.md is part of the
# project metadata that the build backend reads.
COPY pyproject.toml README.md ./
COPY app/ ./app/
RUN pip install --no-cache-dir --no-build-isolation --no-deps .

# Numeric, so runtimes that check runAsNonRoot can verify it without
# reading /etc/passwd.
USER 10001:10001

ENTRYPOINT ["cloud-job-metrics"]
CMD ["drain"]
