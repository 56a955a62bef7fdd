"""`musicrec search` answers from an index built in a temporary storage folder."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from pipelines.cli import build_parser, main
from recommenders.text_search import TextSearchIndex, build_search_index, track_descriptor

TRACKS = pl.DataFrame(
    {
        "track_id": ["t1", "t2", "t3"],
        "artist_id": ["a1", "a2", "a3"],
        "title": ["Night Chorale", "Road Anthem", "Hymn of Voices"],
        "tags": [["piano", "slow", "calm"], ["guitar", "fast", "energetic", "drums"], ["choir", "melancholic"]],
        "caption": ["A calm solo piano piece in a low register at a slow tempo.",
                    "An energetic guitar track with a driving drum beat.", None],
    }
)
ARTISTS = pl.DataFrame({"artist_id": ["a1", "a2"], "name": ["The Quiet Lanterns", "Iron Engines"]})


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    root = tmp_path_factory.mktemp("storage")
    build_search_index(TRACKS, None, root / "search", artists=ARTISTS)
    return root


def test_descriptor_joins_tags_and_caption() -> None:
    assert track_descriptor(["piano", "calm"], "A calm piece.") == "piano, calm. A calm piece."
    assert track_descriptor(["choir"], None) == "choir"


def test_cli_prints_ranked_results(storage, capsys) -> None:
    assert main(["search", "a gentle piano piece, slow and calm", "-k", "2", "--storage", str(storage)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("1.") and "Night Chorale" in lines[0] and "The Quiet Lanterns" in lines[0]
    assert "[piano, slow, calm]" in lines[0]
    score = float(lines[0].split()[1])
    assert 0.3 < score <= 1.0


def experiment_file(folder: Path, storage: Path) -> Path:
    """An experiment file (tiny demo catalog) whose outputs live in `storage`."""
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump({"name": "search", "storage": str(storage),
                                    "catalog": {"kind": "demo", "size": "tiny"}}))
    return path


def test_cli_reads_storage_from_the_experiment_file(storage, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("MUSICREC_EXPERIMENT", raising=False)
    path = experiment_file(tmp_path, storage)
    assert main(["search", "choir singing a sad hymn", "-k", "1", "--experiment", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Hymn of Voices" in out and "a3" in out  # artist without a name falls back to its id


def test_cli_reads_the_experiment_from_environment(storage, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MUSICREC_EXPERIMENT", str(experiment_file(tmp_path, storage)))
    assert main(["search", "choir singing a sad hymn", "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "Hymn of Voices" in out and "a3" in out  # artist without a name falls back to its id


def test_storage_overrides_the_experiment(storage, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MUSICREC_EXPERIMENT", str(experiment_file(tmp_path, tmp_path / "empty")))
    assert main(["search", "choir singing a sad hymn", "-k", "1", "--storage", str(storage)]) == 0
    assert "Hymn of Voices" in capsys.readouterr().out


def test_index_round_trip_and_scores(storage) -> None:
    index = TextSearchIndex.load(storage / "search")
    results = index.search("energetic guitar with drums", k=3)
    assert [r[0] for r in results][0] == "t2"
    assert [s for _, s in results] == sorted((s for _, s in results), reverse=True)


def test_cli_without_index_explains(tmp_path, capsys) -> None:
    assert main(["search", "anything", "--storage", str(tmp_path)]) == 2
    assert "no search index" in capsys.readouterr().err


def test_parser_lists_search_subcommand(monkeypatch) -> None:
    monkeypatch.delenv("MUSICREC_EXPERIMENT", raising=False)
    args = build_parser().parse_args(["search", "calm piano"])
    assert args.k == 10 and args.text == "calm piano" and args.handler.__name__ == "run_search"
    assert args.storage is None and args.experiment.parts[-2:] == ("experiments", "demo.yaml")
