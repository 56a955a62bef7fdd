"""Report figures from the `metrics` contract table, written as PNG with matplotlib's Agg backend.

Every function takes the metrics table (columns scenario, recommender, backbone, metric, k, value, ci_low,
ci_high, n), picks one metric at one k in one scenario, writes a PNG of a deterministic pixel size
(`figure_pixels`) and returns its path. Raises ValueError when the selection is empty.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: safe in Dagster runs and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from catalog.io import atomic_path  # noqa: E402

DPI = 100
METRIC_NAMES = {"hit_rate": "HitRate", "recall": "Recall", "ndcg": "NDCG", "precision": "Precision",
                "mrr": "MRR", "map": "MAP"}


def _select(metrics: pl.DataFrame, metric: str, k: int, scenario: str) -> pl.DataFrame:
    chosen = metrics.filter((pl.col("scenario") == scenario) & (pl.col("metric") == metric) & (pl.col("k") == k))
    if chosen.is_empty():
        available = metrics.select("scenario", "metric", "k").unique().sort(["scenario", "metric", "k"]).rows()
        raise ValueError(f"no metrics rows for scenario={scenario!r}, metric={metric!r}, k={k}; "
                         f"available (scenario, metric, k): {available}")
    return chosen


def _label(metric: str, k: int) -> str:
    return f"{METRIC_NAMES.get(metric, metric)}@{k}"


def heatmap_size(n_recommenders: int, n_backbones: int) -> tuple[float, float]:
    """Figure size in inches of a heatmap with that many rows (recommenders) and columns (backbones)."""
    return (max(6.0, 2.0 + 1.4 * n_backbones), max(3.5, 1.5 + 0.55 * n_recommenders))


def bar_size(n_systems: int) -> tuple[float, float]:
    """Figure size in inches of a bar chart of `n_systems` bars."""
    return (max(6.0, 1.5 + 0.5 * n_systems), 5.0)


def figure_pixels(size: tuple[float, float], dpi: int = DPI) -> tuple[int, int]:
    """(width, height) in pixels of a PNG saved from a figure of `size` inches."""
    return int(round(size[0] * dpi)), int(round(size[1] * dpi))


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)  # no bbox_inches="tight": the pixel size stays predictable
        tmp.chmod(0o644)  # readable like any report file (the temp file is created 0600)
    plt.close(fig)
    return path


def heatmap(metrics: pl.DataFrame, metric: str = "ndcg", k: int = 50, scenario: str = "hot",
            path: str | Path | None = None) -> Path:
    """Backbones (columns) x recommenders (rows), cell colour and annotation = mean `metric`@`k`.

    Cells of systems that were not run (e.g. a CF baseline on a content backbone) stay blank; CF baselines
    appear in the column "none"."""
    if path is None:
        raise TypeError("heatmap: path is required")
    chosen = _select(metrics, metric, k, scenario)
    recommenders = chosen["recommender"].unique(maintain_order=True).to_list()
    backbones = chosen["backbone"].unique(maintain_order=True).to_list()
    grid = np.full((len(recommenders), len(backbones)), np.nan)
    for row in chosen.iter_rows(named=True):
        grid[recommenders.index(row["recommender"]), backbones.index(row["backbone"])] = row["value"]

    fig, ax = plt.subplots(figsize=heatmap_size(len(recommenders), len(backbones)), dpi=DPI, layout="constrained")
    finite = grid[np.isfinite(grid)]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    cmap = plt.get_cmap("viridis").with_extremes(bad="#eeeeee")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto")
    for i in range(len(recommenders)):
        for j in range(len(backbones)):
            value = grid[i, j]
            text, colour = ("–", "#888888") if math.isnan(value) else (
                f"{value:.3f}", "black" if value > 0.6 * vmax else "white")
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(len(backbones)), backbones, rotation=20, ha="right")
    ax.set_yticks(range(len(recommenders)), recommenders)
    ax.set_xlabel("backbone")
    ax.set_ylabel("recommender")
    ax.set_title(f"{_label(metric, k)}, {scenario} scenario (mean over test users)")
    fig.colorbar(image, ax=ax, label=_label(metric, k))
    return _save(fig, path)


def bar_with_ci(metrics: pl.DataFrame, metric: str = "ndcg", k: int = 50, scenario: str = "hot",
                path: str | Path | None = None) -> Path:
    """One bar per system (recommender / backbone), best first, with its 95% interval as error bar (none
    where the interval is undefined, n = 1). Bars are coloured by backbone."""
    if path is None:
        raise TypeError("bar_with_ci: path is required")
    chosen = _select(metrics, metric, k, scenario).sort(["value", "recommender", "backbone"],
                                                        descending=[True, False, False])
    values = chosen["value"].to_numpy()
    low = chosen["ci_low"].fill_null(float("nan")).to_numpy().astype(float)
    high = chosen["ci_high"].fill_null(float("nan")).to_numpy().astype(float)
    errors = np.nan_to_num(np.vstack([values - low, high - values]), nan=0.0).clip(min=0.0)
    backbones = chosen["backbone"].unique(maintain_order=True).to_list()
    palette = plt.get_cmap("tab10")
    colours = [palette(sorted(backbones).index(b) % 10) for b in chosen["backbone"].to_list()]

    fig, ax = plt.subplots(figsize=bar_size(chosen.height), dpi=DPI, layout="constrained")
    x = np.arange(chosen.height)
    ax.bar(x, values, yerr=errors, color=colours, capsize=3, error_kw={"elinewidth": 1, "ecolor": "#333333"})
    labels = [f"{r} / {b}" for r, b in zip(chosen["recommender"].to_list(), chosen["backbone"].to_list())]
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(_label(metric, k))
    ax.set_ylim(bottom=0.0)
    ax.set_title(f"{_label(metric, k)}, {scenario} scenario: mean with 95% CI")
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette(sorted(backbones).index(b) % 10)) for b in sorted(backbones)]
    ax.legend(handles, sorted(backbones), title="backbone", fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def report_figures(metrics: pl.DataFrame, folder: str | Path, k: int = 50) -> dict[str, Path]:
    """The report's figures, written into `folder`: per scenario, the NDCG@k heatmap (recommender x backbone)
    and NDCG@k and HitRate@k bars with 95% CIs (each only where that metric was computed at k). Returns
    caption -> PNG path, in display order."""
    folder = Path(folder)
    figures: dict[str, Path] = {}
    for scenario in metrics["scenario"].unique(maintain_order=True).to_list():
        present = set(metrics.filter((pl.col("scenario") == scenario) & (pl.col("k") == k))["metric"].to_list())
        if "ndcg" in present:
            figures[f"{scenario}: {_label('ndcg', k)} by recommender and backbone"] = heatmap(
                metrics, "ndcg", k, scenario, folder / f"heatmap_{scenario}_ndcg_at{k}.png")
        for metric in ("ndcg", "hit_rate"):
            if metric in present:
                figures[f"{scenario}: {_label(metric, k)} per system, 95% CI"] = bar_with_ci(
                    metrics, metric, k, scenario, folder / f"bars_{scenario}_{metric}_at{k}.png")
    return figures


def layer_sweep_plot(results: pl.DataFrame, path: str | Path, k: int = 200) -> Path:
    """Artist similarity: test NDCG@`k` against the number of SAGE layers, one line per node-feature source
    (`results`: columns features, layers, ndcg200, ndcg200_published as written by the artist-similarity
    sweep). Solid: standard IDCG; dashed, same colour: the published code's extra-term IDCG."""
    if results.is_empty():
        raise ValueError("layer_sweep_plot: no sweep results")
    fig, ax = plt.subplots(figsize=(7.0, 4.5), dpi=DPI, layout="constrained")
    palette = plt.get_cmap("tab10")
    for index, ((features,), group) in enumerate(results.sort("layers").group_by(["features"], maintain_order=True)):
        layers = group["layers"].to_numpy()
        ax.plot(layers, group["ndcg200"].to_numpy(), marker="o", color=palette(index % 10), label=str(features))
        ax.plot(layers, group["ndcg200_published"].to_numpy(), marker="o", linestyle="--", color=palette(index % 10),
                alpha=0.6)
    ax.set_xticks(sorted(results["layers"].unique().to_list()))
    ax.set_xlabel("SAGE layers")
    ax.set_ylabel(f"test NDCG@{k}")
    ax.set_ylim(bottom=0.0)
    ax.set_title(f"Artist similarity, test NDCG@{k} (solid: standard IDCG, dashed: published)", fontsize=10)
    ax.legend(title="node features", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
