# Sluicegate gateway image: small (python slim, no compilers in the final stage), non-root, every
# dependency pinned with its hash from requirements/runtime.lock.
#
#   docker build -t sluicegate .
#   docker run -p 4000:4000 -v $PWD/gateway.yaml:/etc/sluicegate/config.yaml:ro sluicegate
#
# runtime.lock is compiled with the redis and postgres extras, so replica mode (redis_url / database_url)
# works in this image (see docs/replicas.md).

ARG PYTHON=python:3.11-slim-bookworm

FROM ${PYTHON} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first, from the lock only, so this layer is reused until the lock changes.
COPY requirements/runtime.lock requirements/build.lock requirements/
RUN python -m venv /opt/sluicegate \
 && /opt/sluicegate/bin/pip install --require-hashes --no-deps -r requirements/runtime.lock \
 && python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.lock
COPY pyproject.toml README.md LICENSE ./
COPY src src
# The package itself: built with the pinned setuptools, installed without touching the pinned dependencies.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/sluicegate/bin/pip install --no-deps /wheels/*.whl

FROM ${PYTHON}
ENV PATH=/opt/sluicegate/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 sluicegate \
 && useradd --system --uid 10001 --gid sluicegate --no-create-home --home-dir /nonexistent sluicegate
COPY --from=build /opt/sluicegate /opt/sluicegate
USER 10001:10001
WORKDIR /tmp
EXPOSE 4000
# SIGTERM drains: readiness 503 for server.drain_delay, then server.shutdown_grace for in-flight requests.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:4000/health/liveness', timeout=2).status != 200)"]
ENTRYPOINT ["sluicegate", "serve"]
CMD ["--config", "/etc/sluicegate/config.yaml", "--host", "0.0.0.0", "--port", "4000"]
