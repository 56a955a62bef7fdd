"""Random listening data of a stated size, for benchmarks and tests that need volume rather than structure."""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from catalog.io import ItemVectors


def random_plays(users: int, items: int, dim: int, plays: int, seed: int = 0) -> tuple[pl.DataFrame, ItemVectors]:
    """(interactions, item vectors): each of `users` users plays `plays` distinct random items of `items`,
    one minute apart from 2019-02-01; the (items, dim) float32 vectors are standard Gaussian."""
    rng = np.random.default_rng(seed)
    item_ids = [f"t{i:05d}" for i in range(items)]
    chosen = np.argsort(rng.random((users, items)), axis=1)[:, :plays]
    start = datetime(2019, 2, 1)
    table = pl.DataFrame({
        "user_id": np.repeat([f"u{u:05d}" for u in range(users)], plays),
        "track_id": np.array(item_ids)[chosen.ravel()],
        "timestamp": [start + timedelta(minutes=int(m)) for m in np.tile(np.arange(plays), users)],
        "count": np.ones(users * plays, dtype=np.int32),
    }).with_columns(pl.col("timestamp").cast(pl.Datetime("us")))
    return table, ItemVectors(item_ids, rng.standard_normal((items, dim)).astype(np.float32))
