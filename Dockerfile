# One image for every service; compose picks the command (`aitrader run <service>`).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    AITRADER_LOG_FORMAT=json

WORKDIR /app

# Dependencies first (pinned), so code changes do not reinstall them. Not the `[embedded]`
# extra: compose runs PostgreSQL and NATS in their own containers.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p aitrader services shared \
 && touch aitrader/__init__.py services/__init__.py shared/__init__.py \
 && pip install -c constraints.txt . \
 && pip uninstall -y aitrader

COPY aitrader ./aitrader
COPY shared ./shared
COPY services ./services
COPY deploy ./deploy
RUN pip install --no-deps -c constraints.txt . \
 && useradd --system --uid 10001 --no-create-home aitrader \
 && install -d -o aitrader -m 0700 /var/lib/aitrader /var/lib/aitrader/audit-spill /var/lib/aitrader/archive

# The migrations ship inside the package (aitrader/migrations/, package data).
USER aitrader
ENTRYPOINT ["aitrader"]
CMD ["--help"]
