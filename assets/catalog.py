"""Catalog assets: the contract tables of the configured catalog (the demo catalog by default)."""

import hashlib
from pathlib import Path

import dagster as dg
import polars as pl

from catalog.demo import build_demo_catalog
from catalog.ingest import ingest_folder
from catalog.io import read_table, update_with_table, write_table
from catalog.schemas import SPECS, check_references
from pipelines.resources import CatalogResource, StorageResource

CATALOG_CODE_VERSION = "1"
TABLES = ("tracks", "artists", "interactions", "artist_edges", "queries")


def content_version(table: pl.DataFrame) -> dg.DataVersion:
    """A data version from the table's content (column names + row hashes), so an unchanged table re-emitted
    by a new run does not make anything downstream stale."""
    digest = hashlib.sha256()
    update_with_table(digest, table)
    return dg.DataVersion(digest.hexdigest()[:16])


def folder_tables(catalog: CatalogResource) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """Ingest a folder catalog; the other tables come from the optional Parquet paths of the resource."""
    result = ingest_folder(catalog.folder, catalog.metadata_csv or None)
    tables = {"tracks": result.tracks}
    for name in TABLES[1:]:
        path = getattr(catalog, name)
        tables[name] = read_table(Path(path), name) if path else pl.from_arrow(SPECS[name].schema.empty_table())
    return tables, result.failures


@dg.multi_asset(
    outs={name: dg.AssetOut(group_name="catalog", code_version=CATALOG_CODE_VERSION,
                            description=f"The catalog's `{name}` table (DESIGN.md data contract).")
          for name in TABLES},
    can_subset=False,
)
def catalog_tables(context: dg.AssetExecutionContext, catalog: CatalogResource, storage: StorageResource):
    """Build (demo) or ingest (folder) the catalog, validate every table against its contract, and emit them.

    The audio stays where it is: `tracks.audio_path` is relative to `storage/catalog/<name>/` for the demo,
    or to the configured folder."""
    if catalog.source == "demo":
        root = build_demo_catalog(storage.path("catalog", "demo"), catalog.demo_config())
        tables = {name: read_table(root / f"{name}.parquet", name) for name in TABLES}
        failures = read_table(root / "failures.parquet", "failures")
    elif catalog.source == "folder":
        tables, failures = folder_tables(catalog)
    else:
        raise ValueError(f"catalog.source must be 'demo' or 'folder', got {catalog.source!r}")
    known_tracks = set(tables["tracks"]["track_id"].to_list())
    check_references(tables["interactions"].to_arrow(), "track_id", known_tracks, "interactions", "tracks")
    write_table(failures, "failures", storage.path("tables", "catalog_failures.parquet"))
    for failure in failures.iter_rows(named=True):
        context.log.warning(f"skipped track {failure['track_id']}: {failure['error']}")
    for name in TABLES:
        yield dg.Output(tables[name], output_name=name, data_version=content_version(tables[name]),
                        metadata={"rows": tables[name].height})
