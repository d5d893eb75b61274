"""`python -m services.ingest`."""

from shared.runner import run_service

run_service("ingest")
