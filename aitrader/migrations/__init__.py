"""The SQL migrations, shipped in the wheel as package data (read with importlib.resources)."""
