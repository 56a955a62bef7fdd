"""The `musicrec` command line. Each subcommand is one `add_<name>(subparsers)` function listed in
`SUBCOMMANDS`: it adds its parser and sets `handler`, a function of the parsed arguments returning the exit
status. To add a subcommand, write such a function and append it to `SUBCOMMANDS`.

    musicrec check experiments/folder.yaml      # validate the file, its weights and its tables; train nothing
    musicrec run experiments/folder.yaml        # materialise the experiment through Dagster, print the report path
    musicrec search "calm solo piano, slow" -k 5 [--experiment FILE | --storage DIR]

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
    return Path(os.environ.get("MUSICREC_EXPERIMENT") or Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml")


def search_index_folder(storage: Path) -> Path:
    """`storage` itself when it holds an index, else `storage/search`."""
    return storage if (storage / "index.faiss").is_file() else storage / SEARCH_FOLDER


def run_check(args: argparse.Namespace) -> int:
    """Print every problem of the experiment file (exit 1), or a summary of what it will run (exit 0)."""
    from pipelines.check import check_experiment

    experiment, problems = check_experiment(args.experiment)
    if problems:
        print(f"{args.experiment}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    systems = experiment.hot_systems()
    print(f"{args.experiment}: ok. Experiment {experiment.name}: {len(experiment.backbones)} backbone table(s) "
          f"{sorted(experiment.backbones)}, {len(systems)} hot system(s), studies {list(experiment.studies)}; "
          f"outputs in {experiment.storage}")
    return 0


def run_run(args: argparse.Namespace) -> int:
    """Check, then materialise the experiment; print where the report is."""
    from pipelines.check import check_experiment
    from pipelines.run import instance_for, report_path, run_experiment

    experiment, problems = check_experiment(args.experiment)
    if problems:
        print(f"{args.experiment}: {len(problems)} problem(s); nothing was run", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    try:
        run_experiment(experiment, instance_for(experiment))
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


def run_search(args: argparse.Namespace) -> int:
    """Print the top-k tracks for the query: rank, score, title, artist, tags."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from recommenders.text_search import TextSearchIndex

    if args.storage is None:
        from assets.experiment import load_experiment

        args.storage = load_experiment(args.experiment).storage
    folder = search_index_folder(args.storage)
    if not (folder / "index.faiss").is_file():
        print(f"musicrec search: no search index in {folder}; build it with `make demo` or "
              f"recommenders.text_search.build_search_index(tracks, model_folder, out_folder)", file=sys.stderr)
        return 2
    index = TextSearchIndex.load(folder)
    shown = {row["track_id"]: row for row in index.tracks.iter_rows(named=True)}
    for rank, (track_id, score) in enumerate(index.search(args.text, args.k), start=1):
        row = shown[track_id]
        tags = ", ".join(row["tags"] or [])
        print(f"{rank:>3}. {score:6.3f}  {row['title'] or track_id}  —  {row['artist'] or '?'}  [{tags}]")
    return 0


def add_search(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("search", help="find tracks by a free-text description")
    parser.add_argument("text", help='what to listen to, e.g. "a calm piano piece at a slow tempo"')
    parser.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    parser.add_argument("--experiment", type=Path, default=default_experiment(),
                        help="the experiment whose index to query (default: $MUSICREC_EXPERIMENT or the demo)")
    parser.add_argument("--storage", type=Path, default=None, help="a storage folder instead of the experiment's")
    parser.set_defaults(handler=run_search)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_check, add_run, add_search]


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
