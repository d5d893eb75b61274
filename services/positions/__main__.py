"""`python -m services.positions`: run the fill-ledger service until SIGINT / SIGTERM."""

from shared.runner import run_service

if __name__ == "__main__":
    run_service("positions")
