"""Catalog assets: the contract tables of the experiment's catalog (demo, folder, Music4All-Onion, tables)."""

import hashlib
from dataclasses import replace
from pathlib import Path

import dagster as dg
import polars as pl

from assets.experiment import (
    Catalog,
    DemoCatalog,
    Experiment,
    FolderCatalog,
    Music4AllOnionCatalog,
    SyntheticCatalog,
    TablesCatalog,
)
from assets.resources import StorageResource
from assets.retries import retried_when_transient
from catalog.demo import DemoConfig, build_demo_catalog
from catalog.ingest import ingest_folder
from catalog.io import read_table, update_with_table, write_table
from catalog.music4all import music4all_catalog
from catalog.scale import generate
from catalog.schemas import SPECS, check_references

CATALOG_CODE_VERSION = "2"
TABLES = ("tracks", "artists", "interactions", "artist_edges", "queries")
# the demo catalog's sizes: "full" is the demo; "tiny" (4 artists x 3 tracks, 40 listeners, 3-second clips,
# 2 batches) renders in seconds for tests and quick looks
DEMO_SIZES: dict[str, DemoConfig] = {
    "full": DemoConfig(),
    "tiny": DemoConfig(n_artists=4, tracks_per_artist=3, n_pieces=6, n_users=40, n_batches=2, clip_seconds=3.0),
}


def content_version(table: pl.DataFrame) -> dg.DataVersion:
    """A data version from the table's content (column names + row hashes), so an unchanged table re-emitted
    by a new run does not make anything downstream stale."""
    digest = hashlib.sha256()
    update_with_table(digest, table)
    return dg.DataVersion(digest.hexdigest()[:16])


def demo_root(storage: StorageResource) -> Path:
    return storage.path("catalog", "demo")


def audio_root(catalog: Catalog, storage: StorageResource) -> Path | None:
    """The folder `tracks.audio_path` is relative to; None when the catalog has no audio."""
    if isinstance(catalog, DemoCatalog):
        return demo_root(storage)
    if isinstance(catalog, FolderCatalog):
        return catalog.folder
    return getattr(catalog, "audio", None)


def _empty(name: str) -> pl.DataFrame:
    return pl.from_arrow(SPECS[name].schema.empty_table())


def _optional_tables(catalog: FolderCatalog | TablesCatalog, names: tuple[str, ...]) -> dict[str, pl.DataFrame]:
    """The contract tables named in `names` from the catalog's Parquet paths (empty when a path is unset)."""
    return {name: read_table(getattr(catalog, name), name) if getattr(catalog, name) else _empty(name)
            for name in names}


def read_catalog(catalog: Catalog, storage: StorageResource) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, int]:
    """(the five contract tables, the failures table, the number of audio files decoded now) of any catalog
    kind; only a folder catalog decodes (new or changed files)."""
    failures, decoded = _empty("failures"), 0
    if isinstance(catalog, DemoCatalog):
        root = build_demo_catalog(demo_root(storage), replace(DEMO_SIZES[catalog.size], seed=catalog.seed))
        tables = {name: read_table(root / f"{name}.parquet", name) for name in TABLES}
        failures = read_table(root / "failures.parquet", "failures")
    elif isinstance(catalog, FolderCatalog):
        result = ingest_folder(catalog.folder, catalog.metadata_csv,
                               cache=storage.path("catalog", "ingest_cache.parquet"))
        tables = {"tracks": result.tracks, **_optional_tables(catalog, TABLES[1:])}
        failures, decoded = result.failures, result.decoded
    elif isinstance(catalog, Music4AllOnionCatalog):
        tables = music4all_catalog(catalog.listening, catalog.information, catalog.audio)
        tables.update({name: _empty(name) for name in ("artist_edges", "queries")})
    elif isinstance(catalog, SyntheticCatalog):
        tables = {**generate(catalog.config()), **{name: _empty(name) for name in ("artist_edges", "queries")}}
    elif isinstance(catalog, TablesCatalog):
        tables = {"tracks": read_table(catalog.tracks, "tracks"),
                  "interactions": read_table(catalog.interactions, "interactions"),
                  **_optional_tables(catalog, ("artists", "artist_edges", "queries"))}
    else:
        raise TypeError(f"unknown catalog kind {type(catalog).__name__}")
    return tables, failures, decoded


def build_catalog_asset(experiment: Experiment) -> dg.AssetsDefinition:
    @dg.multi_asset(
        outs={name: dg.AssetOut(group_name="catalog", code_version=CATALOG_CODE_VERSION,
                                description=f"The catalog's `{name}` table (DESIGN.md data contract).")
              for name in TABLES},
        can_subset=False,
        name="catalog_tables",
    )
    @retried_when_transient
    def catalog_tables(context: dg.AssetExecutionContext, storage: StorageResource):
        """Build (demo), ingest (folder) or read (Music4All-Onion, tables) the experiment's catalog, validate
        every table against its contract, and emit them. The audio stays where it is."""
        tables, failures, decoded = read_catalog(experiment.catalog, storage)
        known_tracks = set(tables["tracks"]["track_id"].to_list())
        check_references(tables["interactions"].to_arrow(), "track_id", known_tracks, "interactions", "tracks")
        write_table(failures, "failures", storage.path("tables", "catalog_failures.parquet"))
        for failure in failures.iter_rows(named=True):
            context.log.warning(f"skipped track {failure['track_id']}: {failure['error']}")
        for name in TABLES:
            extra = {"decoded_files": decoded, "failed_files": failures.height} if name == "tracks" else {}
            yield dg.Output(tables[name], output_name=name, data_version=content_version(tables[name]),
                            metadata={"rows": tables[name].height, **extra})

    return catalog_tables
