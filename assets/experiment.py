"""The experiment file: one YAML file describes a whole experiment (catalog, backbone tables, recommenders,
baselines, studies, split, metrics, storage), validated with pydantic against the registries.

    experiment = load_experiment("experiments/demo.yaml")   # ExperimentError listing every problem

Relative paths in the file are relative to the file's folder. A backbone table is `name -> {backbone:
<registered backbone>, <its options>}` (`backbone` defaults to the table's name), so one backbone can give
several tables; recommenders and baselines are `name -> {recommender: <registered recommender>, <options>}`
the same way. Options are checked against the class's `Options` dataclass: an unknown or mistyped option is
an error naming the key path and what is allowed. The asset factories read only this object.
"""
from __future__ import annotations

import dataclasses
import importlib
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from catalog.registry import Configurable, option_names
from embedders.base import BACKBONES, Backbone
from recommenders.base import RECOMMENDERS, Recommender

NO_BACKBONE = "none"  # the backbone label of pure collaborative baselines
STUDIES: tuple[str, ...] = ("hot", "cold_start", "artist_similarity", "text_search")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXPERIMENT = REPO_ROOT / "experiments" / "demo.yaml"


class ExperimentError(ValueError):
    """An experiment file that cannot run; `problems` lists every one as "key.path: what is wrong"."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source, self.problems = source, problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """A path relative to the experiment file's folder (the validation context's `base`)."""
    base = (info.context or {}).get("base")
    path = path.expanduser()
    return path if path.is_absolute() or base is None else (Path(base) / path).resolve()


FilePath = Annotated[Path, AfterValidator(_resolve)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DemoCatalog(Strict):
    """The generated demo catalog: `size` "full" (the demo: 384 tracks) or "tiny" (12 tracks, seconds)."""

    kind: Literal["demo"]
    size: Literal["full", "tiny"] = "full"
    seed: int = 0


class FolderCatalog(Strict):
    """A folder of audio files (one sub-folder per catalog batch), an optional metadata CSV, and Parquet files
    of the other contract tables (interactions is what the recommenders learn from)."""

    kind: Literal["folder"]
    folder: FilePath
    metadata_csv: FilePath | None = None
    interactions: FilePath | None = None
    artists: FilePath | None = None
    artist_edges: FilePath | None = None
    queries: FilePath | None = None


class Music4AllOnionCatalog(Strict):
    """Music4All-Onion: `userid_trackid_timestamp.tsv`, optionally `id_information.csv` (artists) and the
    folder of `<id>.mp3` files."""

    kind: Literal["music4all_onion"]
    listening: FilePath
    information: FilePath | None = None
    audio: FilePath | None = None


class TablesCatalog(Strict):
    """Contract tables as Parquet files (DESIGN.md "Data contracts"); `audio`: the folder `tracks.audio_path`
    is relative to (absent: backbones that read audio cannot run)."""

    kind: Literal["tables"]
    tracks: FilePath
    interactions: FilePath
    artists: FilePath | None = None
    artist_edges: FilePath | None = None
    queries: FilePath | None = None
    audio: FilePath | None = None


class SyntheticCatalog(Strict):
    """A synthetic scale catalog with planted structure (`catalog.scale`): a preset ("small", "journal",
    "large") with any of its sizes replaced; no audio (pair it with the `synthetic` backbone)."""

    kind: Literal["synthetic"]
    preset: Literal["small", "journal", "large"] = "small"
    n_tracks: int | None = Field(None, ge=10)
    n_artists: int | None = Field(None, ge=1)
    n_clusters: int | None = Field(None, ge=1)
    n_users: int | None = Field(None, ge=1)
    median_tracks: float | None = Field(None, gt=0)
    seed: int = 0

    def config(self):
        """The `catalog.scale.ScaleConfig` this entry describes."""
        from catalog.scale import preset

        sizes = {k: v for k, v in self.model_dump().items() if k not in ("kind", "preset") and v is not None}
        return preset(self.preset, **sizes)


Catalog = Annotated[DemoCatalog | FolderCatalog | Music4AllOnionCatalog | TablesCatalog | SyntheticCatalog,
                    Field(discriminator="kind")]


class Split(Strict):
    """The time split. With `test_start` (a date): training is the `train_days` before it (all earlier plays
    when null), the test period the `test_days` from it (all later plays when null). Without it: the
    `test_fraction` quantile of timestamps. Test-period users are divided at random (`seed`) into
    `validation_share` for early stopping and the rest for the reported numbers."""

    test_start: date | None = None
    train_days: int | None = Field(None, gt=0)
    test_days: int | None = Field(None, gt=0)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    validation_share: float = Field(0.5, gt=0, lt=1)
    seed: int = 0

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments of `evaluation.splits.hot_split` and `evaluation.cold_splits.cold_split`."""
        cutoff = None if self.test_start is None else datetime.combine(self.test_start, time())
        return {"cutoff": cutoff, "test_fraction": self.test_fraction, "validation_share": self.validation_share,
                "seed": self.seed, "train_days": self.train_days, "test_days": self.test_days}


class Metrics(Strict):
    """Cutoffs of every metric; the report's headline cutoff; `twin`: the backbone table every system is
    tested against (paired test on the same users), by default the table of the `random` backbone."""

    ks: tuple[int, ...] = (10, 20, 50)
    headline_k: int = 50
    twin: str | None = None

    @model_validator(mode="after")
    def _headline_in_ks(self) -> "Metrics":
        if self.headline_k not in self.ks or min(self.ks) < 1:
            raise ValueError(f"headline_k {self.headline_k} must be one of ks {list(self.ks)}, all positive")
        return self


class ColdStart(Strict):
    """The cold-start study: every recommender of the experiment that ranks new tracks, compared with
    `reference` (a registered recommender, options from `recommenders` or `baselines` when listed there, else
    from `options`), each fit once per seed in `seeds`; `k` is the report's cutoff; `holdout_artists` the
    fraction of artists withheld from training so that new artists exist."""

    reference: str = "acarec"
    options: dict[str, Any] = Field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2)
    k: int = 20
    holdout_artists: float = Field(0.2, ge=0, lt=1)


class Serve(Strict):
    """What the serving tables hold: each user's top `k` from recommender `recommender` (a key of
    `recommenders` or `baselines`; default: the first recommender, else the first baseline) on backbone table
    `backbone` (default: the first table that is not the twin; "none" for a baseline), and each track's `k`
    most similar tracks by the vectors of table `similar` (default: `backbone`, else the first non-twin table)."""

    recommender: str | None = None
    backbone: str | None = None
    similar: str | None = None
    k: int = Field(50, ge=1, le=1000)


class Component(BaseModel):
    """A backbone table or a recommender: which registered class, and its options (every other key)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BackboneTable(Component):
    """`backbone` (default: the table's name), `long_track_chunks` (tracks over 10 minutes are embedded in
    60 s chunks: all of them, or this many spread evenly), and the backbone's own options."""

    backbone: str | None = None
    long_track_chunks: int | None = Field(None, ge=1)


class RecommenderEntry(Component):
    recommender: str | None = None


def _entries(value: Any) -> Any:
    """`[a, b]` is short for `{a: {}, b: {}}`."""
    return {name: {} for name in value} if isinstance(value, list) else value


class Experiment(Strict):
    """A validated experiment (module docstring). Use `load_experiment` to read a file."""

    name: str
    storage: FilePath
    catalog: Catalog
    plugins: tuple[str, ...] = ()
    executor: Literal["in_process", "multiprocess", "k8s"] = "in_process"
    gpu_pool: Literal["auto", "always", "never"] = "auto"
    memory_budget_mb: int | None = Field(None, ge=256)  # the run's process may not hold more data than this
    backbones: dict[str, BackboneTable] = Field(default_factory=dict)
    recommenders: dict[str, RecommenderEntry] = Field(default_factory=dict)
    baselines: dict[str, RecommenderEntry] = Field(default_factory=dict)
    studies: tuple[Literal["hot", "cold_start", "artist_similarity", "text_search"], ...] = ("hot",)
    split: Split = Split()
    metrics: Metrics = Metrics()
    cold_start: ColdStart = ColdStart()
    serve: Serve = Serve()

    _recommenders_before = field_validator("recommenders", "baselines", mode="before")(_entries)

    @field_validator("studies")
    @classmethod
    def _hot_always(cls, studies: tuple[str, ...]) -> tuple[str, ...]:
        if "hot" not in studies:
            raise ValueError(f"studies must include 'hot' (the backbone x recommender matrix); got {list(studies)}")
        return studies

    # ------------------------------------------------------------------------------------------ derived facts

    def uses_gpu_pool(self) -> bool:
        """Whether GPU-heavy steps join the `gpu` pool and request a GPU: `gpu_pool` "always" or "never", or
        "auto": on Kubernetes (GPU pods) or where this machine has a CUDA device."""
        if self.gpu_pool != "auto":
            return self.gpu_pool == "always"
        import torch

        return self.executor == "k8s" or torch.cuda.is_available()

    def runs(self, study: str) -> bool:
        """Whether this experiment includes `study` (one of STUDIES)."""
        if study not in STUDIES:
            raise ValueError(f"unknown study {study!r}; known: {list(STUDIES)}")
        return study in self.studies

    def backbone_class(self, table: str) -> type[Backbone]:
        return BACKBONES.get(self.backbones[table].backbone or table)

    def backbone_options(self, table: str) -> dict[str, Any]:
        return self.backbones[table].options()

    def recommender_entry(self, name: str) -> RecommenderEntry:
        entry = self.recommenders.get(name) or self.baselines.get(name)
        if entry is None and name == self.cold_start.reference:
            return RecommenderEntry(**self.cold_start.options)
        return entry if entry is not None else RecommenderEntry()

    def recommender_class(self, name: str) -> type[Recommender]:
        return RECOMMENDERS.get(self.recommender_entry(name).recommender or name)

    def recommender_options(self, name: str) -> dict[str, Any]:
        return self.recommender_entry(name).options()

    def hot_systems(self) -> list[tuple[str, str]]:
        """Every (recommender, backbone table) pair trained in the hot scenario; baselines pair with "none"."""
        return ([(r, b) for r in self.recommenders for b in self.backbones]
                + [(r, NO_BACKBONE) for r in self.baselines])

    def cold_systems(self) -> list[str]:
        """The recommenders compared in cold start: those that rank new tracks, then the reference."""
        ranking = [r for r in self.recommenders if self.recommender_class(r).ranks_new_tracks
                   and r != self.cold_start.reference]
        return ranking + [self.cold_start.reference]

    def twin(self) -> str | None:
        """The backbone table every system is tested against (`metrics.twin`, else the `random` one)."""
        if self.metrics.twin is not None:
            return self.metrics.twin
        return next((t for t in self.backbones if self.backbone_class(t).name == "random"), None)

    def content_tables(self) -> list[str]:
        """Backbone tables other than the twin (random vectors carry no content)."""
        return [t for t in self.backbones if t != self.twin()]

    def served_system(self) -> tuple[str, str]:
        """(recommender, backbone table or "none") whose recommendations the serving tables hold."""
        name = self.serve.recommender or next(iter([*self.recommenders, *self.baselines]), None)
        if name is None:
            raise ValueError("serve: the experiment has no recommender or baseline to serve")
        if name in self.baselines:
            return name, NO_BACKBONE
        tables = self.content_tables() or list(self.backbones)
        return name, self.serve.backbone or tables[0]

    def similar_table(self) -> str | None:
        """The backbone table similar tracks are computed from (None without a content table)."""
        if self.serve.similar is not None:
            return self.serve.similar
        _, backbone = self.served_system() if (self.recommenders or self.baselines) else (None, NO_BACKBONE)
        return backbone if backbone != NO_BACKBONE else next(iter(self.content_tables()), None)

    def audio_tables(self) -> list[str]:
        """Backbone tables that decode audio."""
        return [t for t in self.backbones if self.backbone_class(t).needs_audio]


def check_options(cls: type[Configurable], options: dict[str, Any], key: str) -> tuple[dict[str, Any], list[str]]:
    """(`options` converted to the declared types, problems: unknown names and wrong types, each prefixed by
    the key path `key`)."""
    allowed = option_names(cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        return options, [f"{key}.{name}: unknown option of {cls.name}; allowed: {list(allowed)}" for name in unknown]
    try:
        typed = dataclasses.asdict(TypeAdapter(cls.Options).validate_python(options))
    except ValidationError as error:
        return options, [f"{key}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
    return {name: typed[name] for name in options}, []


def _relative_weights(cls: type[Backbone], options: dict[str, Any], base: Path | None) -> dict[str, Any]:
    """`options` with relative weight paths (`cls.weight_options`) made relative to `base`."""
    resolved = dict(options)
    for option in cls.weight_options:
        value = resolved.get(option)
        if base is not None and isinstance(value, str) and not Path(value).expanduser().is_absolute():
            resolved[option] = str((base / Path(value).expanduser()).resolve())
    return resolved


def normalise(experiment: Experiment, base: Path | None) -> tuple[Experiment, list[str]]:
    """The experiment with typed options and resolved weight paths, and every problem the registries find:
    unknown classes or options, content/baseline roles, the twin, the cold-start reference."""
    problems: list[str] = []
    tables: dict[str, BackboneTable] = {}
    for table, entry in experiment.backbones.items():
        try:
            cls = experiment.backbone_class(table)
        except KeyError as error:
            problems.append(f"backbones.{table}.backbone: {error.args[0]}")
            continue
        options, found = check_options(cls, entry.options(), f"backbones.{table}")
        problems += found
        tables[table] = BackboneTable(backbone=entry.backbone, long_track_chunks=entry.long_track_chunks,
                                      **_relative_weights(cls, options, base))
    groups: dict[str, dict[str, RecommenderEntry]] = {"recommenders": {}, "baselines": {}}
    for group, entries in groups.items():
        for name, entry in getattr(experiment, group).items():
            try:
                cls = experiment.recommender_class(name)
            except KeyError as error:
                problems.append(f"{group}.{name}.recommender: {error.args[0]}")
                continue
            options, found = check_options(cls, entry.options(), f"{group}.{name}")
            problems += found
            entries[name] = RecommenderEntry(recommender=entry.recommender, **options)
            if group == "recommenders" and not cls.uses_content:
                problems.append(f"recommenders.{name}: {cls.name} uses no backbone; list it under baselines")
            if group == "baselines" and cls.uses_content:
                problems.append(f"baselines.{name}: {cls.name} needs a backbone; list it under recommenders")
    if experiment.recommenders and not experiment.backbones:
        problems.append("backbones: the recommenders need at least one backbone table")
    if experiment.metrics.twin is not None and experiment.metrics.twin not in experiment.backbones:
        problems.append(f"metrics.twin: {experiment.metrics.twin!r} is not a backbone table; "
                        f"tables: {sorted(experiment.backbones)}")
    serve = experiment.serve
    if serve.recommender is not None and serve.recommender not in {**experiment.recommenders, **experiment.baselines}:
        problems.append(f"serve.recommender: {serve.recommender!r} is not a key of recommenders or baselines")
    for key in ("backbone", "similar"):
        table = getattr(serve, key)
        if table is not None and table not in experiment.backbones:
            problems.append(f"serve.{key}: {table!r} is not a backbone table; tables: {sorted(experiment.backbones)}")
    cold_start = experiment.cold_start
    if experiment.runs("cold_start"):
        reference = cold_start.reference
        try:
            cls = experiment.recommender_class(reference)
            if not cls.ranks_new_tracks:
                problems.append(f"cold_start.reference: {reference} cannot rank new tracks")
            if cold_start.options and reference in {**experiment.recommenders, **experiment.baselines}:
                problems.append(f"cold_start.options: {reference} is listed under recommenders or baselines; "
                                "give its options there")
            options, found = check_options(cls, cold_start.options, "cold_start.options")
            problems += found
            cold_start = cold_start.model_copy(update={"options": options})
        except KeyError as error:
            problems.append(f"cold_start.reference: {error.args[0]}")
    return experiment.model_copy(update={"backbones": tables, "cold_start": cold_start, **groups}), problems


def _with_defaults(data: dict, default_name: str) -> dict:
    """The file's keys with the default name and storage folder (`storage/<name>`) filled in."""
    data = {"name": default_name, **data}
    data.setdefault("storage", f"storage/{data['name']}")
    return data


def experiment_storage(path: str | Path) -> Path:
    """The storage folder an experiment file names, read without validating the rest (fast lookups: the
    serving commands need no registry)."""
    path = Path(path)
    try:
        data = _with_defaults(yaml.safe_load(path.read_text()) or {}, path.stem)
    except (OSError, yaml.YAMLError) as error:
        raise ExperimentError(str(path), [f"cannot read the file: {error}"]) from None
    storage = Path(str(data["storage"])).expanduser()
    return storage if storage.is_absolute() else (path.resolve().parent / storage).resolve()


def parse_experiment(data: Any, source: str = "<experiment>", base: Path | None = None,
                     default_name: str = "experiment") -> Experiment:
    """Validate a parsed experiment file (a dict); `base` resolves relative paths. ExperimentError lists
    every problem with its key path."""
    if not isinstance(data, dict):
        raise ExperimentError(source, [f"the file must hold a mapping of keys, got {type(data).__name__}"])
    data = _with_defaults(data, default_name)
    for module in data.get("plugins") or ():
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ExperimentError(source, [f"plugins: cannot import {module!r}: {error}"]) from error
    try:
        experiment = Experiment.model_validate(data, context={"base": base})
    except ValidationError as error:
        raise ExperimentError(source, [f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}"
                                       for e in error.errors()]) from None
    experiment, problems = normalise(experiment, base)
    if problems:
        raise ExperimentError(source, problems)
    return experiment


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment YAML file; its name defaults to the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(str(path), ["no such file"])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ExperimentError(str(path), [f"not valid YAML: {error}"]) from None
    return parse_experiment(data, str(path), path.resolve().parent, default_name=path.stem)
