# syntax=docker/dockerfile:1
# inkit-connector image: a virtualenv built in one stage from hashed locks, copied into a clean
# runtime that has no pip, no compiler and no test stand-ins.
# Build: make image   (podman; or docker build, see docs/container.md)

# One base for both stages (the venv's interpreter symlinks point into it). The default is the
# official image pinned to an exact Python release; pin it by digest for a reproducible base:
#   --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
# Two virtualenvs: /opt/build holds the build tools (pip, setuptools, cyclonedx) and stays in this
# stage; /opt/venv is the runtime and is created without pip. pip >= 22.3 installs into it with
# --python.
RUN python -m venv /opt/build \
    && python -m venv --without-pip /opt/venv
WORKDIR /src
# The dependencies first: this layer is rebuilt only when a lock changes, not on every code edit.
# --require-hashes: every artifact is checked against requirements/*.lock (`make lock` writes
# them); --only-binary: wheels only, so nothing is compiled (librdkafka is inside the
# confluent-kafka wheel).
COPY requirements/image.lock requirements/image-build.lock ./requirements/
RUN /opt/build/bin/pip install --no-cache-dir --require-hashes --no-deps --only-binary=:all: \
        -r requirements/image-build.lock \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-cache-dir \
        --require-hashes --no-deps --only-binary=:all: -r requirements/image.lock \
    && rm -rf /opt/venv/lib/python3*/site-packages/pycountry/locales \
        /opt/venv/lib/python3*/site-packages/pycountry/tests
# pycountry's translations of country names (22 MB of gettext catalogues) are never read: the
# mapping matches English names and ISO codes only (connector/events/address.py).
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY connector ./connector
# The project's own wheel, built offline by the locked setuptools; pyproject leaves the test
# stand-ins (connector.testing) out of it. pip byte-compiles what it installs, so the read-only
# runtime never needs to write .pyc files.
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --no-index \
        --wheel-dir /tmp/wheels . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-cache-dir --no-deps \
        --no-index /tmp/wheels/*.whl \
    && /opt/venv/bin/inkit-connector --version \
    && mkdir -p /opt/sbom \
    && /opt/build/bin/cyclonedx-py environment --pyproject pyproject.toml --output-reproducible \
        --output-format JSON --output-file /opt/sbom/inkit-connector.cdx.json /opt/venv/bin/python

FROM ${PYTHON_IMAGE}
# Build arguments become labels; `make image` passes them from the checkout.
ARG PYTHON_IMAGE
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
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric UID/GID, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
# The base's own pip (and the wheels ensurepip would install) go: the runtime installs nothing.
RUN groupadd --system --gid 10001 connector \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin connector \
    && if python -m pip --version >/dev/null 2>&1; then \
           python -m pip uninstall --yes --quiet pip setuptools wheel; \
       fi \
    && rm -rf /usr/local/bin/pip* /usr/share/python-wheels \
       /usr/local/lib/python3*/ensurepip/_bundled /usr/lib/python3*/ensurepip/_bundled
COPY --from=builder /opt/venv /opt/venv
# The CycloneDX SBOM of the Python packages above (`make image` also copies it to dist/).
COPY --from=builder /opt/sbom /usr/share/doc/inkit-connector
USER 10001:10001
EXPOSE 9464
# Kubernetes uses its own probes; this one serves `docker run` and Compose.
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('METRICS_PORT', '9464'), timeout=2)"]
# Exec form: the connector is PID 1 and gets SIGTERM itself (it drains, commits and exits 0).
ENTRYPOINT ["inkit-connector"]
CMD ["run"]
