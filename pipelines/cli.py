"""The `musicrec` command line. Each subcommand is one `add_<name>(subparsers)` function listed in
`SUBCOMMANDS`: it adds its parser and sets `handler`, a function of the parsed arguments returning the exit
status. To add a subcommand, write such a function and append it to `SUBCOMMANDS`.

    musicrec check experiments/folder.yaml      # validate the file, its weights and its tables; train nothing
    musicrec run experiments/folder.yaml        # materialise the experiment through Dagster, print the report path
    musicrec recommend USER [-k 10]              # a user's recommendations from the serving tables
    musicrec similar TRACK [-k 10]                # tracks like a catalog track
    musicrec similar --audio song.ogg [-k 10]     # tracks like an audio file (embedded with the serving backbone)
    musicrec similar --artist ARTIST [-k 10]      # artists like an artist (GraphSAGE, when the artist study runs)
    musicrec search "calm solo piano, slow" -k 5
    musicrec serve [--host 127.0.0.1 --port 8000] # the same over HTTP, with a web page

The lookups take `--experiment FILE` or `--storage DIR` (the experiment's storage folder).

Without `--experiment`, a command reads $MUSICREC_EXPERIMENT, else experiments/demo.yaml.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

SEARCH_FOLDER = "search"  # the search index lives in <storage>/search


def default_experiment() -> Path:
    """$MUSICREC_EXPERIMENT when set, else the repository's experiments/demo.yaml."""
    return Path(os.environ.get("MUSICREC_EXPERIMENT")
                or Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml")


def search_index_folder(storage: Path) -> Path:
    """`storage` itself when it holds an index, else `storage/search`."""
    return storage if (storage / "index.faiss").is_file() else storage / SEARCH_FOLDER


def print_problems(path: Path, problems: list[str], consequence: str = "") -> None:
    """Every problem of an experiment file, one per line, on stderr."""
    print(f"{path}: {len(problems)} problem(s){consequence}", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)


def run_check(args: argparse.Namespace) -> int:
    """Print every problem of the experiment file (exit 1), or a summary of what it will run (exit 0)."""
    from pipelines.check import check_experiment

    experiment, problems = check_experiment(args.experiment)
    if problems:
        print_problems(args.experiment, problems)
        return 1
    systems = experiment.hot_systems()
    print(f"{args.experiment}: ok. Experiment {experiment.name}: {len(experiment.backbones)} backbone table(s) "
          f"{sorted(experiment.backbones)}, {len(systems)} hot system(s), studies {list(experiment.studies)}; "
          f"outputs in {experiment.storage}")
    return 0


def run_run(args: argparse.Namespace) -> int:
    """Check, then materialise the experiment; print where the report is."""
    from pipelines.check import check_experiment
    from pipelines.run import apply_memory_budget, instance_for, report_path, run_experiment

    experiment, problems = check_experiment(args.experiment)
    if problems:
        print_problems(args.experiment, problems, "; nothing was run")
        return 1
    apply_memory_budget(experiment)
    try:
        run_experiment(experiment, instance_for(experiment), experiment_file=args.experiment)
    except RuntimeError as error:
        print(f"musicrec run: {error}", file=sys.stderr)
        return 1
    report = report_path(experiment)
    print(f"Report: {report}" if report.exists() else f"musicrec run: no report at {report}", flush=True)
    if report.exists() and args.print_report:
        print(report.read_text())
    return 0 if report.exists() else 1


def add_check(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="validate an experiment file, its weights and its tables")
    parser.add_argument("experiment", type=Path, help="the experiment YAML file")
    parser.set_defaults(handler=run_check)


def add_run(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="materialise an experiment through Dagster (only what is stale)")
    parser.add_argument("experiment", type=Path, help="the experiment YAML file")
    parser.add_argument("--print-report", action="store_true", help="print the Markdown report at the end")
    parser.set_defaults(handler=run_run)


def storage_of(args: argparse.Namespace) -> Path:
    """`--storage`, else the storage folder of `--experiment` (read without loading any model)."""
    if args.storage is not None:
        return args.storage
    from assets.experiment import experiment_storage

    return experiment_storage(args.experiment)


def print_hits(hits) -> None:
    """One line per result: rank, score, title, artist, tags."""
    for rank, hit in enumerate(hits, start=1):
        tags = f"  [{', '.join(hit.tags)}]" if hit.tags else ""
        print(f"{rank:>3}. {hit.score:7.3f}  {hit.title}  —  {hit.artist or '?'}  ({hit.track_id}){tags}")


def _release(args: argparse.Namespace):
    from serving.snapshot import load_current

    return load_current(storage_of(args))


def run_recommend(args: argparse.Namespace) -> int:
    """Print a user's recommendations from the live serving release."""
    from serving.snapshot import UnknownId

    try:
        print_hits(_release(args).recommend(args.user, args.k))
    except (UnknownId, FileNotFoundError) as error:
        print(f"musicrec recommend: {error}", file=sys.stderr)
        return 2
    return 0


def run_similar(args: argparse.Namespace) -> int:
    """Print the tracks most similar to a catalog track or to an audio file, or the artists most similar to an
    artist."""
    from serving.snapshot import UnknownId

    if sum(x is not None for x in (args.track, args.audio, args.artist)) != 1:
        print("musicrec similar: give a TRACK id, --audio FILE or --artist ARTIST (one of them)", file=sys.stderr)
        return 2
    try:
        release = _release(args)
        if args.track is not None:
            print_hits(release.similar(args.track, args.k))
        elif args.artist is not None:
            for rank, hit in enumerate(release.similar_artists(args.artist, args.k), start=1):
                print(f"{rank:>3}. {hit.score:7.3f}  {hit.name}  ({hit.artist_id})")
        else:
            from serving.audio_query import embed_file

            print_hits(release.similar_to_vector(embed_file(release.manifest, args.audio), args.k))
    except (UnknownId, FileNotFoundError, LookupError, ValueError) as error:
        print(f"musicrec similar: {error}", file=sys.stderr)
        return 2
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Serve the experiment's live release over HTTP until interrupted."""
    from serving.api import run_server

    run_server(storage_of(args), host=args.host, port=args.port, search_precision=args.search_precision)
    return 0


def _lookup_options(parser: argparse.ArgumentParser, k: bool = True) -> None:
    if k:
        parser.add_argument("-k", type=_bounded_k, default=10, help="number of results, 1-200 (default 10)")
    parser.add_argument("--experiment", type=Path, default=default_experiment(),
                        help="the experiment (default: $MUSICREC_EXPERIMENT or the demo)")
    parser.add_argument("--storage", type=Path, default=None, help="a storage folder instead of the experiment's")


def _bounded_k(value: str) -> int:
    k = int(value)
    if not 1 <= k <= 200:
        raise argparse.ArgumentTypeError(f"k must be between 1 and 200, got {k}")
    return k


def add_recommend(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("recommend", help="a user's recommendations (serving tables)")
    parser.add_argument("user", help="a user id of the catalog's listening table")
    _lookup_options(parser)
    parser.set_defaults(handler=run_recommend)


def add_similar(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("similar", help="tracks similar to a catalog track or to an audio file")
    parser.add_argument("track", nargs="?", help="a track id of the catalog")
    parser.add_argument("--audio", type=Path, help="an audio file to embed with the serving backbone instead")
    parser.add_argument("--artist", help="an artist id: the most similar artists instead (needs the artist study)")
    _lookup_options(parser)
    parser.set_defaults(handler=run_similar)


def add_serve(subparsers: argparse._SubParsersAction) -> None:
    from recommenders.query_encoder import SERVER_PRECISIONS

    parser = subparsers.add_parser("serve", help="the serving tables as an HTTP JSON API with a web page")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--search-precision", choices=SERVER_PRECISIONS, default="auto",
                        help="what the search worker's query encoder computes in: bfloat16 halves its time on CPUs "
                             "with native bfloat16 (query vectors within about 1e-4 of float32's); float32 gives "
                             "the vectors of sentence-transformers and `musicrec search`; auto (default): bfloat16 "
                             "where the CPU has it natively, else float32")
    _lookup_options(parser, k=False)
    parser.set_defaults(handler=run_serve)


def run_search(args: argparse.Namespace) -> int:
    """Print the top-k tracks for the query: rank, score, title, artist, tags."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from recommenders.text_search import TextSearchIndex

    folder = search_index_folder(storage_of(args))
    if not (folder / "index.faiss").is_file():
        print(f"musicrec search: no search index in {folder}; build it with `make demo` or "
              f"recommenders.text_search.build_search_index(tracks, model_folder, out_folder)", file=sys.stderr)
        return 2
    index = TextSearchIndex.load(folder, lean=True)  # queries without importing sentence-transformers
    shown = {row["track_id"]: row for row in index.tracks.iter_rows(named=True)}
    for rank, (track_id, score) in enumerate(index.search(args.text, args.k), start=1):
        row = shown[track_id]
        tags = ", ".join(row["tags"] or [])
        print(f"{rank:>3}. {score:6.3f}  {row['title'] or track_id}  —  {row['artist'] or '?'}  [{tags}]")
    return 0


def add_search(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("search", help="find tracks by a free-text description")
    parser.add_argument("text", help='what to listen to, e.g. "a calm piano piece at a slow tempo"')
    _lookup_options(parser)
    parser.set_defaults(handler=run_search)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_check, add_run, add_recommend, add_similar, add_search, add_serve]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musicrec", description="musicrec: music catalog to recommendations")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
