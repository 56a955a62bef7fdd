"""Dagster asset definitions: thin wrappers that call catalog/embedders/recommenders/evaluation."""
