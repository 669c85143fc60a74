# syntax=docker/dockerfile:1
# Pulse: the locked environment (uv.lock, `uv sync --frozen`) in a slim, non-root image.
#   docker build -t pulse:local .
#   docker run --rm pulse:local --help
# Stage 1 resolves nothing: it installs exactly the lockfile's versions (dependencies first, for the layer cache),
# then the project. Stage 2 copies the virtual environment and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --no-install-project
COPY cli.py ./
COPY pulse ./pulse
COPY ingesters ./ingesters
COPY consumers ./consumers
COPY sinks ./sinks
COPY control_plane ./control_plane
COPY app ./app
COPY web ./web
COPY lambda ./lambda
COPY pulsar ./pulsar
# editable (a .pth naming /app): control_plane reads pulsar/namespaces.yaml and pulsar/schemas/ beside the code
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 pulse \
 && useradd --system --uid 10001 --gid pulse --home-dir /var/lib/pulse --create-home --shell /usr/sbin/nologin pulse
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PULSE_RUNTIME__HOME=/var/lib/pulse \
    PULSE_METRICS__HOST=0.0.0.0 \
    PULSE_LOGGING__FORMAT=json
WORKDIR /app
USER pulse:pulse
VOLUME ["/var/lib/pulse"]
ENTRYPOINT ["pulse"]
CMD ["--help"]
