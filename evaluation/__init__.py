"""Splits, ranking metrics, confidence intervals and significance tests, report tables and plots. No Dagster imports."""
