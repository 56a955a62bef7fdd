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


STORAGE_TAG = "musicrec/storage"  # the storage folder of the experiment a run materialised


def materialised_elsewhere(keys: set[dg.AssetKey], instance: dg.DagsterInstance, storage: str) -> set[dg.AssetKey]:
    """Assets whose latest materialisation was made for another experiment's storage (several experiments can
    share one Dagster instance, and so its concurrency pools, while their asset names coincide): they must be
    materialised again here. Runs without the tag (launched from the web UI) count as this experiment's."""
    foreign = set()
    for key in keys:
        event = instance.get_latest_materialization_event(key)
        run = instance.get_run_by_id(event.run_id) if event is not None else None
        if run is not None and run.tags.get(STORAGE_TAG, storage) != storage:
            foreign.add(key)
    return foreign


def outdated_assets(defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str,
                    tables: Path | None = None, storage: str | None = None) -> set[dg.AssetKey]:
    """The assets of job `job_name` that are missing or stale (their code version changed, or an upstream
    asset has a data version they did not consume), whose stored table under `tables` is unreadable, or
    whose latest materialisation was for another experiment's `storage`; everything downstream of those in
    the job (it will read their new outputs); and whole multi-assets that cannot be subset."""
    graph = defs.resolve_asset_graph()
    keys = defs.resolve_job_def(job_name).asset_layer.executable_asset_keys
    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                          instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    pending = [key for key in keys if resolver.get_status(key) != StaleStatus.FRESH]
    pending += list(unreadable_tables(set(keys), tables)) if tables is not None else []
    pending += list(materialised_elsewhere(set(keys), instance, storage)) if storage is not None else []
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
