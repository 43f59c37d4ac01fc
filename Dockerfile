# One image for every service; the command picks the service and, for triage and routing, the
# lane (see deploy/compose.yaml and deploy/k8s/):
#   ocsea serve-one intake | triage --lanes live | triage --lanes bulk | routing --lanes …
#   ocsea serve-one audit | ocsea serve-one console
#   python -m ocsea.topic_plan deploy/kafka/topics.toml      (the topics, before the services)
#   python -m services.audit.entrypoints.schema --grant-to ocsea_audit   (the ledger's tables)
# Build from the repository root: docker build -t ocsea:0.1.0 .
FROM python:3.11.13-slim-bookworm AS build

ENV UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
# The uv version ./dev pins, from PyPI.
RUN pip install --no-cache-dir uv==0.13.8

WORKDIR /app
# Dependencies first (their layer survives code changes), from the lock file only.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY contracts ./contracts
COPY services ./services
COPY ocsea ./ocsea
COPY deploy/kafka/topics.toml ./deploy/kafka/topics.toml
RUN uv sync --frozen --no-dev

FROM python:3.11.13-slim-bookworm

# A fixed, unprivileged uid: Kubernetes' runAsNonRoot checks the number, and the compose
# file's secrets must be readable by it.
RUN useradd --system --uid 10001 --gid 0 --home-dir /app --no-create-home ocsea
WORKDIR /app
COPY --from=build --chown=root:root /app /app
# var/ is scratch space only (a tmpfs or emptyDir in a deployment): keys, principals and the
# ledger's database are never kept in the container.
RUN mkdir -p /app/var && chown 10001:0 /app/var

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OCSEA_HOST=0.0.0.0 \
    OCSEA_VAR_DIR=/app/var \
    OCSEA_LOG_JSON=true
USER 10001
EXPOSE 8080 8081 8082 8083 8084
ENTRYPOINT ["ocsea"]
CMD ["--help"]
