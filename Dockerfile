# syntax=docker/dockerfile:1
# Image of the `supreme` CLI; its default command runs the engine on exchange candles
# (paper broker unless TRADING_MODE/--mode says otherwise) with metrics on port 9108.
#
#   docker build -t supreme:0.1.0 .
#   docker run --rm -p 9108:9108 -e SUPREME_METRICS_ADDR=0.0.0.0 \
#       -e SUPREME_API_TOKEN="$(openssl rand -hex 32)" supreme:0.1.0
#
# Nothing secret is baked in: EXCHANGE_API_KEY, EXCHANGE_SECRET, SUPREME_API_TOKEN and URLs
# with passwords come from the environment at run time (in Kubernetes: the Secret
# `supreme-secrets`, see k8s/). For reproducible builds pin both base images by digest.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: install the project and its dependencies into /opt/venv ----
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY supreme_cli ./supreme_cli
RUN /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip install .

# ---- runtime: the venv only, no build context, no compilers, non-root ----
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    SUPREME_DATA_DIR=/data \
    SUPREME_PROFILE_DIR=/etc/supreme/profiles \
    NUMBA_CACHE_DIR=/tmp/numba-cache
RUN groupadd --system --gid 10001 supreme \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/supreme --create-home \
        --shell /usr/sbin/nologin supreme \
 && mkdir -p /data \
 && chown 10001:10001 /data
COPY --from=builder /opt/venv /opt/venv
COPY profiles /etc/supreme/profiles
USER 10001:10001
WORKDIR /home/supreme
# Mount /data (and /tmp when the root filesystem is read-only) as writable volumes.
VOLUME ["/data"]
EXPOSE 9108
# No HEALTHCHECK: Kubernetes ignores it and probes /health and /ready itself (k8s/), and the
# endpoint exists only when --metrics-port is given.
ENTRYPOINT ["supreme"]
CMD ["run", "--feed", "exchange", "--metrics-port", "9108", "--no-live"]
