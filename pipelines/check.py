"""`musicrec check`: everything that can be known about an experiment before training anything: the file
itself (keys, registered classes, options), the weight files its backbones name, and the catalog's input
tables (present, readable, within their data contracts)."""
from __future__ import annotations

from pathlib import Path

from assets.experiment import (
    DemoCatalog,
    Experiment,
    ExperimentError,
    FolderCatalog,
    Music4AllOnionCatalog,
    TablesCatalog,
    load_experiment,
)
from catalog.ingest import AUDIO_SUFFIXES
from catalog.io import read_table
from catalog.music4all import read_listening_tsv, read_track_information


def weight_problems(experiment: Experiment) -> list[str]:
    """Weight files and folders named by backbone options (`weight_options`) that do not exist."""
    problems = []
    for table in experiment.backbones:
        options = experiment.backbone_options(table)
        for option in experiment.backbone_class(table).weight_options:
            value = options.get(option)
            if value is not None and not Path(value).exists():
                problems.append(f"backbones.{table}.{option}: {value} does not exist")
    return problems


def _missing(path: Path | None, key: str) -> list[str]:
    return [] if path is None or path.exists() else [f"{key}: {path} does not exist"]


def catalog_problems(experiment: Experiment) -> list[str]:
    """The catalog's inputs: files present, tables readable and within their contracts."""
    catalog, problems = experiment.catalog, []
    tables: dict[str, Path | None] = {}
    if isinstance(catalog, FolderCatalog):
        problems += _missing(catalog.folder, "catalog.folder") + _missing(catalog.metadata_csv, "catalog.metadata_csv")
        if catalog.folder.is_dir() and not any(p.suffix.lower() in AUDIO_SUFFIXES for p in catalog.folder.rglob("*")):
            problems.append(f"catalog.folder: {catalog.folder} holds no audio file "
                            f"({', '.join(sorted(AUDIO_SUFFIXES))})")
        tables = {name: getattr(catalog, name) for name in ("interactions", "artists", "artist_edges", "queries")}
        if catalog.interactions is None and experiment.hot_systems():
            problems.append("catalog.interactions: not set; the recommenders learn from a listening table "
                            "(Parquet: user_id, track_id, timestamp, count)")
    elif isinstance(catalog, TablesCatalog):
        tables = {name: getattr(catalog, name) for name in ("tracks", "interactions", "artists", "artist_edges",
                                                            "queries")}
        problems += _missing(catalog.audio, "catalog.audio")
    elif isinstance(catalog, Music4AllOnionCatalog):
        problems += _missing(catalog.audio, "catalog.audio")
        for key, reader, path in (("listening", read_listening_tsv, catalog.listening),
                                  ("information", read_track_information, catalog.information)):
            if path is None:
                continue
            if not path.exists():
                problems.append(f"catalog.{key}: {path} does not exist")
                continue
            try:
                reader(path)
            except ValueError as error:
                problems.append(f"catalog.{key}: {error}")
    for name, path in tables.items():
        if path is None:
            continue
        if not path.exists():
            problems.append(f"catalog.{name}: {path} does not exist")
            continue
        try:
            read_table(path, name)
        except (ValueError, OSError) as error:
            problems.append(f"catalog.{name}: {error}")
    if experiment.audio_tables() and not isinstance(catalog, (DemoCatalog, FolderCatalog)) \
            and getattr(catalog, "audio", None) is None:
        problems.append(f"catalog.audio: not set, but backbone table(s) {experiment.audio_tables()} read audio")
    return problems


def check_experiment(path: str | Path) -> tuple[Experiment | None, list[str]]:
    """(the experiment when the file is valid, every problem found: file, weights, catalog)."""
    try:
        experiment = load_experiment(path)
    except ExperimentError as error:
        return None, error.problems
    return experiment, weight_problems(experiment) + catalog_problems(experiment)
