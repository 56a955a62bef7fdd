"""Our own small Parquet IO manager: polars DataFrames in and out, written atomically with pyarrow.

(dagster-polars 0.27 breaks with polars 2, and we need atomic writes anyway.)
"""

from pathlib import Path

import dagster as dg
import polars as pl

from catalog.io import retry_transient, write_parquet


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores an asset `a/b` as `<base_dir>/a/b.parquet`."""

    base_dir: str

    def _path(self, key: dg.AssetKey) -> Path:
        return Path(self.base_dir).joinpath(*key.path).with_suffix(".parquet")

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: ParquetIOManager stores polars DataFrames, "
                            f"got {type(obj).__name__}")
        path = write_parquet(obj.to_arrow(), self._path(context.asset_key))
        context.add_output_metadata({"path": str(path), "rows": obj.height})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        path = self._path(context.asset_key)
        if not path.exists():
            raise FileNotFoundError(f"{path}: {context.asset_key.to_user_string()} has not been materialised")
        return retry_transient(lambda: pl.read_parquet(path), str(path))
