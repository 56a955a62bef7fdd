"""Which assets of a set of definitions need materialising: Dagster's own stale status (code versions and the
data versions each materialisation consumed, recorded in the instance), no cursor to keep."""
from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime


def unreadable_tables(keys: set[dg.AssetKey], tables: Path) -> set[dg.AssetKey]:
    """The assets among `keys` whose stored table (`tables/<key>.parquet`, the IO manager's file) exists but
    cannot be read (corrupt, cut short): they must be materialised again."""
    broken = set()
    for key in keys:
        path = tables.joinpath(*key.path).with_suffix(".parquet")
        if path.exists():
            try:
                pq.read_metadata(path)
            except (OSError, ValueError):
                broken.add(key)
    return broken


def outdated_assets(defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str,
                    tables: Path | None = None) -> set[dg.AssetKey]:
    """The assets of job `job_name` that are missing or stale (their code version changed, or an upstream
    asset has a data version they did not consume) or whose stored table under `tables` is unreadable,
    everything downstream of those in the job (it will read their new outputs), and whole multi-assets that
    cannot be subset."""
    graph = defs.resolve_asset_graph()
    keys = defs.resolve_job_def(job_name).asset_layer.executable_asset_keys
    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                          instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    pending = [key for key in keys if resolver.get_status(key) != StaleStatus.FRESH]
    pending += list(unreadable_tables(set(keys), tables)) if tables is not None else []
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
