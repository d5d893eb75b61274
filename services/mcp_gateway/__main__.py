"""`python -m services.mcp_gateway`: the gateway over streamable HTTP."""

from shared.runner import run_service

run_service("mcp_gateway")
