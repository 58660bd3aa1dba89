# syntax=docker/dockerfile:1
# inkit-connector image: a virtualenv built in one stage, copied into a clean slim runtime.
# Build: docker build -t registry.example.com/inkit-connector:0.1.0 .   (see docs/container.md)

# One pinned base for both stages: the venv's interpreter symlinks point into it.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# confluent-kafka and fastavro ship manylinux wheels (librdkafka included): no compiler needed.
# pip byte-compiles what it installs, so the read-only runtime never needs to write .pyc files.
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY connector ./connector
RUN pip install --no-cache-dir . \
    && inkit-connector --version

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="inkit-connector" \
      org.opencontainers.image.description="Kafka consumer delivering Segment Identify events to Inkit, at least once" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric UID/GID, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 connector \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin connector
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
EXPOSE 9464
# Kubernetes uses its own probes; this one serves `docker run` and Compose.
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('METRICS_PORT', '9464'), timeout=2)"]
# Exec form: the connector is PID 1 and gets SIGTERM itself (it drains, commits and exits 0).
ENTRYPOINT ["inkit-connector"]
CMD ["run"]
