"""The installed product's version, one source for the CLI and the MCP server's serverInfo."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def product_version() -> str:
    """The version of the installed `aitrader` distribution ("0+unknown" when run from a bare tree)."""
    try:
        return version("aitrader")
    except PackageNotFoundError:
        return "0+unknown"


VERSION = product_version()
