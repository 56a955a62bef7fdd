"""Audio decoding and one module per audio backbone behind the `Embedder` protocol. No Dagster imports."""
