"""The `musicrec` command line. Each subcommand is one `add_<name>(subparsers, common)` function listed in
`SUBCOMMANDS`: it adds its parser (with `common` as a parent, for the shared `--storage` option) and sets
`handler`, a function of the parsed arguments returning the exit status. To add a subcommand, write such a
function and append it to `SUBCOMMANDS`.

    musicrec search "calm solo piano, slow" -k 5 [--storage DIR]

`--storage` defaults to $MUSICREC_STORAGE, else `storage/` in the repository.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_STORAGE = Path(__file__).resolve().parents[1] / "storage"
SEARCH_FOLDER = "search"  # the search index lives in <storage>/search


def default_storage() -> Path:
    """$MUSICREC_STORAGE when set, else the repository's `storage/` folder."""
    return Path(os.environ.get("MUSICREC_STORAGE") or REPO_STORAGE)


def search_index_folder(storage: Path) -> Path:
    """`storage` itself when it holds an index, else `storage/search`."""
    return storage if (storage / "index.faiss").is_file() else storage / SEARCH_FOLDER


def run_search(args: argparse.Namespace) -> int:
    """Print the top-k tracks for the query: rank, score, title, artist, tags."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from recommenders.text_search import TextSearchIndex

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


def add_search(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("search", parents=[common], help="find tracks by a free-text description")
    parser.add_argument("text", help='what to listen to, e.g. "a calm piano piece at a slow tempo"')
    parser.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    parser.set_defaults(handler=run_search)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [add_search]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--storage", type=Path, default=default_storage(),
                        help="storage folder (default: $MUSICREC_STORAGE or the repository's storage/)")
    parser = argparse.ArgumentParser(prog="musicrec", description="musicrec: music catalog to recommendations")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    for add in SUBCOMMANDS:
        add(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
