"""Serving: the tables a platform reads (recommendations, similar tracks, search), their releases, the CLI lookups and the HTTP API."""
