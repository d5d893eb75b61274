"""`python -m services.metrics`."""

from shared.runner import run_service

if __name__ == "__main__":
    run_service("metrics")
