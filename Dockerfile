# cxdesk image: one image, one role per container (see compose.yaml), the same command
# lines as `make serve` (deploy/serve.py --role …). NOT built or run on the machine this
# was written on (no Docker there); `make serve` is what was tested. See docs/deploy.md.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CXDESK_VAR_DIR=/app/var \
    MEDIA_ROOT=/data/media \
    CXDESK_BIND_HOST=0.0.0.0

# nginx for the proxy role, pg_dump/pg_restore for deploy/backup.sh and restore.sh.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light postgresql-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# Static files are part of the image: the proxy container serves them from STATIC_ROOT. The
# app's bytecode too: with PYTHONDONTWRITEBYTECODE nothing would ever write it, and every
# process start (a worker's restart, a management command) would compile the app again.
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput -v0 \
    && python -m compileall -q -x '/app/(var|tests)/' /app \
    && useradd --system --home /app cxdesk \
    && mkdir -p /data/media /app/var/run \
    && chown -R cxdesk /data /app/var

EXPOSE 8000
# The proxy role runs nginx as root (it drops to nobody for its workers); the others as cxdesk.
ENTRYPOINT ["python", "deploy/serve.py"]
CMD ["--role", "web"]
