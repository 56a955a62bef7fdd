"""One module per recommender behind the `Recommender` interface, and the vector index. No Dagster imports."""
