"""The `precomputed` backbone: Parquet, .npy + ids and Music4All-Onion TSV files written here round-trip
exactly; every malformed file fails naming the file, the line or row and the id; the runner turns catalog
tracks without a vector into failure rows."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.io import ItemVectors, embeddings_to_arrow
from embedders.base import create_embedder
from embedders.precomputed import PrecomputedEmbedder
from embedders.runner import embed_tracks

IDS = ["0009fFIM1eYThaPg", "000C5kMTVzqoXLeu", "001s9Q8vdAY8qxu1"]  # Music4All-style ids
MATRIX = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)


def write_tsv(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    lines = ([header] if header else []) + rows
    path.write_text("".join("\t".join(fields) + "\n" for fields in lines))
    return path


def value_rows(ids: list[str], matrix: np.ndarray) -> list[list[str]]:
    """One TSV row per id: the id, then each value written exactly (repr of the float32 as a float64)."""
    return [[track_id, *(repr(float(v)) for v in vector)] for track_id, vector in zip(ids, matrix)]


def list_string_rows(ids: list[str], matrix: np.ndarray, brackets: bool) -> list[list[str]]:
    """One TSV row per id: the id, then the vector as one comma-separated field (optionally "[...]")."""
    rows = []
    for track_id, vector in zip(ids, matrix):
        joined = ", ".join(repr(float(v)) for v in vector)
        rows.append([track_id, f"[{joined}]" if brackets else joined.replace(" ", "")])
    return rows


def write_npy(directory: Path, matrix: np.ndarray, ids: list[str], ids_text: str | None = None) -> tuple[Path, Path]:
    vectors, ids_file = directory / "vectors.npy", directory / "ids.txt"
    np.save(vectors, matrix)
    ids_file.write_text("\n".join(ids) + "\n" if ids_text is None else ids_text)
    return vectors, ids_file


def assert_vectors(embedder: PrecomputedEmbedder, ids: list[str], matrix: np.ndarray) -> None:
    assert embedder.dim == matrix.shape[1]
    vectors, missing = embedder.embed_ids(ids)
    assert missing == {}
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, matrix)


# ------------------------------------------------------------------------------------------ round trips


def test_parquet_fixed_size_list_registers_and_round_trips(tmp_path):
    path = tmp_path / "vectors.parquet"
    pq.write_table(embeddings_to_arrow(ItemVectors(IDS, MATRIX)), path)
    embedder = create_embedder("precomputed", path=str(path))
    assert isinstance(embedder, PrecomputedEmbedder) and embedder.needs_audio is False
    assert_vectors(embedder, IDS, MATRIX)
    assert_vectors(embedder, IDS[::-1], MATRIX[::-1])  # by id, not by position
    provenance = embedder.provenance()
    assert provenance["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert provenance["source"] == str(path) and provenance["format"] == "parquet"
    assert provenance["policy"] == "vectors given by the user" and provenance["vector_columns"] == "embedding"


def test_parquet_list_column_with_id_column_named_id(tmp_path):
    path = tmp_path / "vectors.pqt"
    table = pa.table({"id": IDS, "title": ["a", "b", "c"],
                      "features": pa.array(MATRIX.astype(np.float64).tolist(), pa.list_(pa.float64()))})
    pq.write_table(table, path)
    assert_vectors(PrecomputedEmbedder(path=str(path)), IDS, MATRIX)


def test_parquet_vector_column_option_picks_one_of_several_lists(tmp_path):
    path = tmp_path / "vectors.parquet"
    other = np.ones((3, 2), np.float32)
    pq.write_table(pa.table({"track_id": IDS, "a": pa.array(other.tolist()), "b": pa.array(MATRIX.tolist())}), path)
    with pytest.raises(ValueError, match="vectors.parquet: several list columns.*vector_column"):
        PrecomputedEmbedder(path=str(path))
    assert_vectors(PrecomputedEmbedder(path=str(path), vector_column="b"), IDS, MATRIX)


def test_parquet_one_numeric_column_per_dimension(tmp_path):
    path = tmp_path / "vectors.parquet"
    frame = pl.DataFrame({"track_id": IDS, "artist": ["x", "y", "z"],
                          **{f"d{j}": MATRIX[:, j] for j in range(MATRIX.shape[1])}})
    frame.write_parquet(path)
    embedder = PrecomputedEmbedder(path=str(path))
    assert_vectors(embedder, IDS, MATRIX)
    assert embedder.provenance()["vector_columns"] == "4 numeric columns 'd0'..'d3'"


def test_npy_with_ids_file_round_trips(tmp_path):
    vectors, ids_file = write_npy(tmp_path, MATRIX.astype(np.float64), IDS, "\n".join(IDS) + "\n\n")  # blank tail
    embedder = create_embedder("precomputed", path=str(vectors), ids=str(ids_file))
    assert_vectors(embedder, IDS, MATRIX)
    assert embedder.provenance()["ids_sha256"] == hashlib.sha256(ids_file.read_bytes()).hexdigest()
    assert embedder.provenance()["format"] == "npy"


@pytest.mark.parametrize("header", [["id", "f0", "f1", "f2", "f3"], None], ids=["header", "headerless"])
def test_onion_tsv_round_trips(tmp_path, header):
    path = write_tsv(tmp_path / "id_blf_sim.tsv", value_rows(IDS, MATRIX), header)
    embedder = PrecomputedEmbedder(path=str(path))
    assert_vectors(embedder, IDS, MATRIX)
    assert embedder.provenance()["format"] == "tsv"


@pytest.mark.parametrize("brackets", [True, False], ids=["python-list", "comma-separated"])
def test_onion_tsv_with_the_vector_in_one_column(tmp_path, brackets):
    path = write_tsv(tmp_path / "id_lyrics_bert.tsv", list_string_rows(IDS, MATRIX, brackets), ["id", "embedding"])
    assert_vectors(PrecomputedEmbedder(path=str(path)), IDS, MATRIX)


def test_format_option_overrides_the_suffix(tmp_path):
    path = write_tsv(tmp_path / "features.txt", value_rows(IDS, MATRIX))
    assert_vectors(PrecomputedEmbedder(path=str(path), format="tsv"), IDS, MATRIX)


# -------------------------------------------------------------------------------------------- lookups


def test_embed_ids_gives_zero_rows_and_reasons_for_absent_ids(tmp_path):
    path = write_tsv(tmp_path / "id_blf_sim.tsv", value_rows(IDS, MATRIX))
    embedder = PrecomputedEmbedder(path=str(path))
    vectors, missing = embedder.embed_ids(["absent1", IDS[1], "absent2"])
    assert vectors.shape == (3, 4) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[[0, 2]], np.zeros((2, 4), np.float32))
    np.testing.assert_array_equal(vectors[1], MATRIX[1])
    reason = f"no precomputed vector in {path}"
    assert missing == {"absent1": reason, "absent2": reason}
    empty, none_missing = embedder.embed_ids([])
    assert empty.shape == (0, 4) and none_missing == {}


def test_unknown_ids_lists_file_ids_outside_the_catalog(tmp_path):
    path = write_tsv(tmp_path / "id_blf_sim.tsv", value_rows(IDS, MATRIX))
    embedder = PrecomputedEmbedder(path=str(path))
    assert embedder.unknown_ids([IDS[1], "not_in_file"]) == [IDS[0], IDS[2]]
    assert embedder.unknown_ids(IDS) == []


def test_runner_turns_tracks_without_a_vector_into_failures(tmp_path):
    path = tmp_path / "vectors.parquet"
    pq.write_table(embeddings_to_arrow(ItemVectors(IDS[:2], MATRIX[:2])), path)
    embedder = create_embedder("precomputed", path=str(path))
    catalog_ids = [IDS[0], "catalogOnly00001", IDS[1], "catalogOnly00002"]
    tracks = pl.DataFrame({"track_id": catalog_ids, "audio_path": [f"audio/{t}.wav" for t in catalog_ids]})
    result = embed_tracks(embedder, tracks, tmp_path / "no_audio_read")
    assert result.vectors.ids == IDS[:2]
    np.testing.assert_array_equal(result.vectors.matrix, MATRIX[:2])
    failures = result.failures.sort("track_id")
    assert failures["track_id"].to_list() == ["catalogOnly00001", "catalogOnly00002"]
    assert failures["stage"].to_list() == ["embed", "embed"]
    assert failures["error"].to_list() == [f"no precomputed vector in {path}"] * 2


# ------------------------------------------------------------------------------------------ validation


def test_missing_files_name_the_option_and_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.parquet \(the `path` option\)"):
        PrecomputedEmbedder(path=str(tmp_path / "absent.parquet"))
    with pytest.raises(FileNotFoundError, match="`path` option"):
        PrecomputedEmbedder()
    vectors, _ = write_npy(tmp_path, MATRIX, IDS)
    with pytest.raises(FileNotFoundError, match=r"absent_ids\.txt \(the `ids` option\)"):
        PrecomputedEmbedder(path=str(vectors), ids=str(tmp_path / "absent_ids.txt"))
    with pytest.raises(FileNotFoundError, match=r"vectors\.npy is a \.npy array; set the `ids` option"):
        PrecomputedEmbedder(path=str(vectors))


def test_unknown_format(tmp_path):
    path = tmp_path / "vectors.csv"
    path.write_text("a,1\n")
    with pytest.raises(ValueError, match=r"vectors\.csv: unknown format \(suffix '\.csv'\)"):
        PrecomputedEmbedder(path=str(path))
    with pytest.raises(ValueError, match=r"vectors\.csv: unknown format \('hdf5'\)"):
        PrecomputedEmbedder(path=str(path), format="hdf5")


def test_ids_option_is_refused_for_other_formats(tmp_path):
    path = write_tsv(tmp_path / "id_blf_sim.tsv", value_rows(IDS, MATRIX))
    with pytest.raises(ValueError, match="`ids` option is for .npy files only"):
        PrecomputedEmbedder(path=str(path), ids=str(path))


def test_parquet_without_id_column(tmp_path):
    path = tmp_path / "vectors.parquet"
    pq.write_table(pa.table({"name": IDS, "embedding": pa.array(MATRIX.tolist())}), path)
    with pytest.raises(ValueError, match=r"vectors\.parquet: no id column 'track_id'"):
        PrecomputedEmbedder(path=str(path))


def test_parquet_rows_of_different_dimension(tmp_path):
    path = tmp_path / "vectors.parquet"
    pq.write_table(pa.table({"track_id": IDS, "embedding": [[1.0, 2.0], [3.0, 4.0], [5.0]]}), path)
    with pytest.raises(ValueError, match=rf"vectors\.parquet: rows of different dimension: id '{IDS[2]}' at row 2 "
                                         r"has 1 values, .* has 2"):
        PrecomputedEmbedder(path=str(path))


def test_tsv_rows_of_different_dimension(tmp_path):
    rows = value_rows(IDS, MATRIX)
    rows[1] = rows[1][:3]
    path = write_tsv(tmp_path / "id_blf_sim.tsv", rows, ["id", "f0", "f1", "f2", "f3"])
    with pytest.raises(ValueError, match=rf"id_blf_sim\.tsv: rows of different dimension: id '{IDS[1]}' at line 3 "
                                         r"has 2 values, line 2 has 4"):
        PrecomputedEmbedder(path=str(path))


def test_tsv_list_strings_of_different_dimension(tmp_path):
    rows = list_string_rows(IDS, MATRIX, brackets=True)
    rows[2][1] = "[0.5, 0.25]"
    path = write_tsv(tmp_path / "id_lyrics_bert.tsv", rows)
    with pytest.raises(ValueError, match=rf"id_lyrics_bert\.tsv: rows of different dimension: id '{IDS[2]}' at "
                                         r"line 3 has 2 values, .* has 4"):
        PrecomputedEmbedder(path=str(path))


@pytest.mark.parametrize("one_column", [False, True], ids=["columns", "list-string"])
def test_tsv_value_that_is_not_a_number(tmp_path, one_column):
    rows = list_string_rows(IDS, MATRIX, brackets=True) if one_column else value_rows(IDS, MATRIX)
    rows[1][1] = "[0.5, oops, 1, 2]" if one_column else "oops"
    path = write_tsv(tmp_path / "id_blf_sim.tsv", rows)
    with pytest.raises(ValueError, match=rf"id_blf_sim\.tsv: not a number in the vector of id '{IDS[1]}' at "
                                         r"line 2: 'oops'"):
        PrecomputedEmbedder(path=str(path))


def test_npy_row_count_differs_from_id_count(tmp_path):
    vectors, ids_file = write_npy(tmp_path, MATRIX, IDS[:2])
    with pytest.raises(ValueError, match=r"vectors\.npy: 3 rows but .*ids\.txt has 2 ids"):
        PrecomputedEmbedder(path=str(vectors), ids=str(ids_file))


def test_npy_must_be_two_dimensional(tmp_path):
    vectors, ids_file = write_npy(tmp_path, MATRIX[0], IDS[:1])
    with pytest.raises(ValueError, match=r"vectors\.npy: expected a 2-D array .* shape \(4,\)"):
        PrecomputedEmbedder(path=str(vectors), ids=str(ids_file))


def test_non_finite_values_name_the_first_id(tmp_path):
    with_nan = MATRIX.copy()
    with_nan[1, 2] = np.nan
    with_nan[2, 0] = np.inf
    vectors, ids_file = write_npy(tmp_path, with_nan, IDS)
    with pytest.raises(ValueError, match=rf"vectors\.npy: non-finite value .* id '{IDS[1]}' at row 1 \(line 2 of "):
        PrecomputedEmbedder(path=str(vectors), ids=str(ids_file))
    parquet = tmp_path / "vectors.parquet"
    pq.write_table(embeddings_to_arrow(ItemVectors(IDS, with_nan)), parquet)
    with pytest.raises(ValueError, match=rf"vectors\.parquet: non-finite value .* id '{IDS[1]}' at row 1, value 2"):
        PrecomputedEmbedder(path=str(parquet))
    rows = value_rows(IDS, MATRIX)
    rows[2][3] = "inf"
    tsv = write_tsv(tmp_path / "id_blf_sim.tsv", rows)
    with pytest.raises(ValueError, match=rf"id_blf_sim\.tsv: non-finite value .* id '{IDS[2]}' at line 3, value 2"):
        PrecomputedEmbedder(path=str(tsv))


def test_duplicate_ids_name_the_first(tmp_path):
    ids = [IDS[0], IDS[1], IDS[2], IDS[1], IDS[0]]
    path = write_tsv(tmp_path / "id_blf_sim.tsv", value_rows(ids, np.ones((5, 4), np.float32)), ["id", *"abcd"])
    with pytest.raises(ValueError, match=rf"id_blf_sim\.tsv: duplicate id '{IDS[0]}' at line 2 and line 6"):
        PrecomputedEmbedder(path=str(path))


def test_empty_id_is_refused(tmp_path):
    vectors, ids_file = write_npy(tmp_path, MATRIX, IDS, f"{IDS[0]}\n\n{IDS[2]}\n")
    with pytest.raises(ValueError, match=r"vectors\.npy: empty track id at row 1 \(line 2 of "):
        PrecomputedEmbedder(path=str(vectors), ids=str(ids_file))


def test_empty_files(tmp_path):
    empty_tsv = tmp_path / "id_empty.tsv"
    empty_tsv.write_text("")
    with pytest.raises(ValueError, match=r"id_empty\.tsv: empty"):
        PrecomputedEmbedder(path=str(empty_tsv))
    header_only = write_tsv(tmp_path / "id_header.tsv", [], ["id", "f0", "f1"])
    with pytest.raises(ValueError, match=r"id_header\.tsv: empty: no vectors after the header"):
        PrecomputedEmbedder(path=str(header_only))
    parquet = tmp_path / "vectors.parquet"
    pq.write_table(embeddings_to_arrow(ItemVectors([], np.zeros((0, 4), np.float32))), parquet)
    with pytest.raises(ValueError, match=r"vectors\.parquet: empty"):
        PrecomputedEmbedder(path=str(parquet))
    vectors, ids_file = write_npy(tmp_path, np.zeros((0, 4), np.float32), [], "")
    with pytest.raises(ValueError, match=r"vectors\.npy: empty"):
        PrecomputedEmbedder(path=str(vectors), ids=str(ids_file))
