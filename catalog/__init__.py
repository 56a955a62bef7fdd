"""Data contracts (table schemas and validation), atomic Parquet IO, catalog ingestion and the demo catalog."""
