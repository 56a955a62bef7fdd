"""Which assets of a set of definitions need materialising: Dagster's own stale status (code versions and the
data versions each materialisation consumed, recorded in the instance), no cursor to keep."""
from __future__ import annotations

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime


def outdated_assets(defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str) -> set[dg.AssetKey]:
    """The assets of job `job_name` that are missing or stale (their code version changed, or an upstream
    asset has a data version they did not consume), everything downstream of those in the job (it will read
    their new outputs), and whole multi-assets that cannot be subset."""
    graph = defs.resolve_asset_graph()
    keys = defs.resolve_job_def(job_name).asset_layer.executable_asset_keys
    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                          instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    pending = [key for key in keys if resolver.get_status(key) != StaleStatus.FRESH]
    outdated: set[dg.AssetKey] = set()
    while pending:
        key = pending.pop()
        if key in outdated or key not in keys:
            continue
        outdated.add(key)
        node = graph.get(key)
        pending += list(node.child_keys)
        if not node.assets_def.can_subset:
            pending += list(node.assets_def.keys)
    return outdated
