# Kahani: the Discord bot. Runs migrations, then the bot (`kahani run`).
FROM python:3.11-slim

# libopus0: voice narration (discord.py encodes Opus with it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libopus0 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY core ./core
COPY migrations ./migrations
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin kahani \
    && mkdir -p /app/data \
    && chown kahani:kahani /app/data

USER kahani
VOLUME ["/app/data"]

# The default DATABASE_URL (sqlite+aiosqlite:///data/kahani.db) lands in the volume.
CMD ["kahani", "run"]
