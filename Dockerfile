# The operator's image. Build from the repository root: docker build -t jwt-trust .
#
# Two stages: the builder installs the project and its operator dependencies into a virtual environment
# at /opt/venv; the final image holds only that environment on a slim Python, runs as a numeric non-root
# user, and writes nothing outside /tmp, so it runs with a read-only root filesystem.
#
# BASE_IMAGE chooses the Python base of both stages: any image with Python 3.11+ and its venv module
# at `python`. tools/image/build.sh builds with a Debian bookworm base it makes itself (no registry).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the build needs (see .dockerignore): metadata, the README it names, the sources. setup.py
# declares the verifier's optional C twin; this slim image has no compiler, so pip falls back to pure
# Python (the operator never verifies tokens on a hot path).
COPY pyproject.toml setup.py README.md ./
COPY operator ./operator
# Not editable: the package is copied into the environment, and /src stays behind in this stage.
RUN /opt/venv/bin/pip install --no-cache-dir '.[operator]'

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    JWT_TRUST_METRICS_PORT=9090
COPY --from=builder /opt/venv /opt/venv
# Numeric, so that Kubernetes can verify runAsNonRoot without a passwd entry.
USER 10001:10001
WORKDIR /tmp
# 8080: kopf's liveness endpoint (/healthz); 9090: Prometheus metrics (/metrics); 8443: the discovery
# service, when the same image runs `jwt-trust discovery` (the chart sets that command).
EXPOSE 8080 9090 8443
# Kubernetes probes the liveness endpoint; a Docker health check would only duplicate it.
HEALTHCHECK NONE
ENTRYPOINT ["kopf", "run", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz", "-m", "jwt_trust.kube.handlers"]
# The chart replaces these: --peering=<name> for several replicas, and the log format.
CMD ["--standalone", "--log-format=json"]
