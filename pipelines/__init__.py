"""Dagster Definitions, jobs, schedules, sensors, resources and the Parquet IO manager."""
