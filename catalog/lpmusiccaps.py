"""Adapter for the LP-MusicCaps data sets (MC, MTT, MSD): Parquet with a `caption_writing` column and a tag
column -> rows of track_id str, tags list<str>, caption str (nullable), the columns of the `tracks` contract
that natural-language retrieval needs (evaluation/text_retrieval.py).

The three releases name their columns differently: the id is `track_id` (MTT, MSD) or `ytid` / `fname` (MC);
the tags are a list column `tag` (MSD), `tag_top188` / `tag_top50` (MTT), or `aspect_list` (MC), which MC
stores as a stringified Python list ("['piano', 'calm']"). All of these are accepted.
"""
from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

import polars as pl

ID_COLUMNS: tuple[str, ...] = ("track_id", "ytid", "fname")
TAG_COLUMNS: tuple[str, ...] = ("tag", "aspect_list", "tag_top188", "tag_top50")
CAPTION_COLUMN = "caption_writing"


def _pick(columns: Sequence[str], candidates: Sequence[str], what: str, source: Path) -> str:
    for name in candidates:
        if name in columns:
            return name
    raise ValueError(f"{source}: no {what} column; expected one of {list(candidates)}, found {list(columns)}")


def parse_tags(value: object, source: Path, row: int) -> list[str]:
    """A tag cell as a list of stripped, non-empty strings: a list, a stringified list, or null (-> [])."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value) if value.strip() else []
        except (ValueError, SyntaxError):
            raise ValueError(f"{source}: row {row}: tag cell {value[:80]!r} is not a list literal") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(tag, str) for tag in value):
        raise ValueError(f"{source}: row {row}: tags must be a list of strings, got {value!r:.80}")
    return [tag.strip() for tag in value if tag.strip()]


def read_lpmusiccaps(
    path: str | Path, tag_column: str | None = None, caption_column: str = CAPTION_COLUMN
) -> pl.DataFrame:
    """Read one LP-MusicCaps Parquet file into track_id str, tags list<str>, caption str (nullable).

    `tag_column` picks the tag column (default: the first of `TAG_COLUMNS` present). Empty captions become
    null. Raises ValueError naming the file for a missing column, an unparsable tag cell or a duplicate id.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such LP-MusicCaps file")
    frame = pl.read_parquet(path)
    id_column = _pick(frame.columns, ID_COLUMNS, "track id", path)
    tag_column = _pick(frame.columns, (tag_column,) if tag_column else TAG_COLUMNS, "tag", path)
    _pick(frame.columns, (caption_column,), "caption", path)
    tags = [parse_tags(value, path, row) for row, value in enumerate(frame[tag_column].to_list())]
    captions = [c.strip() if isinstance(c, str) and c.strip() else None for c in frame[caption_column].to_list()]
    result = pl.DataFrame(
        {"track_id": frame[id_column].cast(pl.String), "tags": tags, "caption": captions},
        schema={"track_id": pl.String, "tags": pl.List(pl.String), "caption": pl.String},
    )
    duplicated = result.filter(pl.col("track_id").is_duplicated())["track_id"].unique().to_list()
    if duplicated:
        raise ValueError(f"{path}: duplicate {id_column} values, first {sorted(duplicated)[0]!r}")
    return result
