"""The console: a read-only JSON API over the ledger for people (docs/console.md)."""
