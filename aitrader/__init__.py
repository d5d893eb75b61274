"""The product's command line: `aitrader up`, `demo`, `migrate`, the embedded servers and the
migrator. Not a service: it starts services and imports them; no service imports it."""
