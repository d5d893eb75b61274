"""`python -m services.console`: the console API over HTTP until SIGINT / SIGTERM."""

from shared.runner import run_service

if __name__ == "__main__":
    run_service("console")
