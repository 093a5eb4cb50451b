# syntax=docker/dockerfile:1
# The router's image: `docker build -t supportrouter .`, run by docker-compose.yml.
# Two stages: the builder installs exactly what requirements/runtime.lock pins (every file checked
# against its hash, wheels only, so no compiler is needed) and the router itself into a venv; the
# final stage is the same pinned slim base with only that venv, running as an unprivileged user.
# The base is pinned by tag and by the digest of its multi-architecture index; to move it, take
# both from `docker buildx imagetools inspect python:3.11.N-slim-bookworm` and change both FROMs.

FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
COPY requirements/runtime.lock /tmp/runtime.lock
RUN /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r /tmp/runtime.lock
COPY pyproject.toml README.md /src/
COPY router /src/router
COPY channels /src/channels
# The router alone (its dependencies are all in already); setuptools, the build backend, lives in
# pip's isolated build environment and never reaches the venv. Then the installers leave it.
RUN /opt/venv/bin/pip install --no-deps /src \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
RUN groupadd --system --gid 10001 supportrouter \
    && useradd --system --uid 10001 --gid supportrouter --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin supportrouter \
    && mkdir -p /app/var \
    && chown supportrouter:supportrouter /app/var
COPY --from=builder /opt/venv /opt/venv
# The operators' files as shipped; compose mounts ./config over them read-only.
COPY config /app/config
COPY deploy/healthcheck.py /app/healthcheck.py
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SUPPORTROUTER_CONFIG_DIR=/app/config \
    SUPPORTROUTER_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8080 2525
# /readyz answering 200: the gateway on its port, the pipeline roles on their status port (deploy/healthcheck.py).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
    CMD ["python", "/app/healthcheck.py"]
ENTRYPOINT ["supportrouter"]
CMD ["run"]
