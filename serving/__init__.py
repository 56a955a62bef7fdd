"""Serving: the tables a platform reads (recommendations, similar tracks, search), their releases, the
lookups of the CLI and the HTTP API."""
