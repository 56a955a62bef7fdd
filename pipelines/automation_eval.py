"""Evaluate the automation conditions once, outside the daemon: which assets are stale right now.

Used by the incremental benchmark and the staleness tests to run exactly what the automation sensor would.
"""
import dagster as dg


def stale_assets(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor=None
) -> tuple[set[str], object]:
    """(asset keys whose automation condition is true now, the cursor to pass to the next evaluation)."""
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    return {r.key.to_user_string() for r in result.results if r.true_subset.size > 0}, result.cursor


def run_assets(defs: dg.Definitions, job_name: str, instance: dg.DagsterInstance, keys: set[str] | None = None):
    """Execute `job_name` in process, restricted to `keys` when given; raises if the run fails."""
    selection = [dg.AssetKey(k) for k in sorted(keys)] if keys else None
    result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, asset_selection=selection)
    if not result.success:
        raise RuntimeError(f"run of {job_name} over {sorted(keys or [])} failed")
    return result
