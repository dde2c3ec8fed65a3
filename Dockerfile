# The server image: API, portal and webhooks in one stateless process per container.
# Everything it keeps lives in Postgres, Redis and an S3 bucket (STORAGE_URL), so any number of
# these run behind one load balancer. See "Deployment" in README.md.
FROM python:3.11-slim-bookworm

# ffmpeg decodes MP3 answers and encodes MP3 downloads; tini passes SIGTERM on so in-flight
# generations finish and settle before the container stops.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /home/sfx sfx

WORKDIR /app
# Dependencies first (their own layer, rebuilt only when pyproject.toml changes). The code runs
# from /app, as it does from a checkout, so migrations/ sits beside server/.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY migrations ./migrations
COPY portal ./portal
COPY server ./server
RUN mkdir -p /app/.data && chown sfx /app/.data

ENV APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/app/.data \
    PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]
ENTRYPOINT ["tini", "--"]
# Applies pending migrations (one process at a time, under a Postgres advisory lock), then serves.
CMD ["python", "-m", "server", "serve"]
