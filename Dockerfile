# One image for every uns-hub service; docker-compose.yml picks the service by its command
# (`uns broker run`, `uns sim run`, `uns edge run`, `uns adapter run`), the same commands the
# native test-suite runs.
# pinned to a patch release: a rebuild must not change the interpreter silently
FROM python:3.11.11-slim-bookworm

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
# uid/gid 10001 (docker-compose.yml runs every service as 10001:10001); each folder a volume is
# mounted on belongs to it, so a fresh named volume starts writable for `init` (/config) and for
# the services (/data, /witness); the root filesystem itself is read-only in compose
RUN pip install --no-cache-dir . \
    && groupadd --system --gid 10001 uns \
    && useradd --system --uid 10001 --gid 10001 --home /data uns \
    && mkdir -p /data /config /witness && chown uns:uns /data /config /witness
USER 10001:10001
# no VOLUME: an image-declared volume would give every container (the simulator too) an
# anonymous writable folder; docker-compose.yml mounts exactly the volumes each service writes
ENTRYPOINT ["uns"]
CMD ["--help"]
