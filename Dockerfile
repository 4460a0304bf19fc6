# One image for every uns-hub service; docker-compose.yml picks the service by its command
# (`uns broker run`, `uns sim run`, `uns edge run`, `uns adapter run`), the same commands the
# native test-suite runs.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UNS_LOG_JSON=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY uns ./uns
COPY edge_node ./edge_node
COPY mes_adapter ./mes_adapter
COPY broker ./broker
COPY simulator ./simulator
COPY unshub ./unshub
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home /data uns \
    && mkdir -p /data /config && chown uns /data
USER uns
VOLUME ["/data"]
ENTRYPOINT ["uns"]
CMD ["--help"]
