"""Report tables: the metrics table over systems, paired tests of each system against its random-embedding
twin, and the Markdown report."""
from __future__ import annotations

from datetime import datetime, timezone

import polars as pl

from evaluation.stats import compare_systems, summarize

SYSTEM = ["scenario", "recommender", "backbone"]


def metrics_table(per_user: pl.DataFrame, experiment: str, dataset: str) -> pl.DataFrame:
    """`metrics` contract rows for every (scenario, recommender, backbone) in `per_user` (per_user_metrics
    output plus the three SYSTEM columns)."""
    parts = [
        summarize(group.drop(SYSTEM), experiment=experiment, dataset=dataset,
                  scenario=scenario, recommender=recommender, backbone=backbone)
        for (scenario, recommender, backbone), group in per_user.group_by(SYSTEM, maintain_order=True)
    ]
    return pl.concat(parts).sort(SYSTEM + ["metric", "k"])


def significance_table(per_user: pl.DataFrame, baseline_backbone: str = "random") -> pl.DataFrame:
    """Wilcoxon signed-rank test of every system against the same recommender on `baseline_backbone`, on the
    same users. Columns: SYSTEM, metric, k, mean_baseline, mean_system, delta (system - baseline), p_value, n."""
    rows = []
    for (scenario, recommender, backbone), group in per_user.group_by(SYSTEM, maintain_order=True):
        if backbone == baseline_backbone:
            continue
        twin = per_user.filter(
            (pl.col("scenario") == scenario) & (pl.col("recommender") == recommender)
            & (pl.col("backbone") == baseline_backbone)
        )
        if twin.is_empty():
            continue
        compared = compare_systems(twin.drop(SYSTEM), group.drop(SYSTEM)).rename(
            {"mean_a": "mean_baseline", "mean_b": "mean_system"})
        rows.append(compared.with_columns(pl.lit(scenario).alias("scenario"), pl.lit(recommender).alias("recommender"),
                                          pl.lit(backbone).alias("backbone")))
    if not rows:
        return pl.DataFrame(schema={c: pl.String for c in SYSTEM})
    return pl.concat(rows).select(SYSTEM + [c for c in rows[0].columns if c not in SYSTEM]).sort(SYSTEM + ["metric", "k"])


def _cell(row: dict) -> str:
    if row["ci_low"] is None:
        return f"{row['value']:.3f}"
    return f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def _stars(p: float | None) -> str:
    if p is None:
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else " (n.s.)"


def markdown_report(
    metrics: pl.DataFrame,
    significance: pl.DataFrame,
    k: int = 50,
    shown: tuple[str, ...] = ("hit_rate", "recall", "ndcg"),
    title: str = "musicrec report",
    baseline_backbone: str = "random",
) -> str:
    """A Markdown report: one table per scenario with mean [95% CI] of each shown metric at `k`, and the
    paired-test marks against the `baseline_backbone` twin (* p<.05, ** p<.01, *** p<.001)."""
    lines = [f"# {title}", "", f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
             f"Mean over test users with 95% t-intervals; marks: Wilcoxon signed-rank test against the same "
             f"recommender on `{baseline_backbone}` embeddings (* p<.05, ** p<.01, *** p<.001, n.s. otherwise).", ""]
    names = {"hit_rate": "HitRate", "recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "mrr": "MRR", "map": "MAP"}
    for scenario in metrics["scenario"].unique(maintain_order=True).to_list():
        at_k = metrics.filter((pl.col("scenario") == scenario) & (pl.col("k") == k))
        lines += [f"## Scenario: {scenario} (k = {k})", "",
                  "| recommender | backbone | " + " | ".join(f"{names[m]}@{k}" for m in shown) + " | users |",
                  "|---|---|" + "---|" * len(shown) + "---|"]
        for (recommender, backbone), group in at_k.group_by(["recommender", "backbone"], maintain_order=True):
            cells = []
            for metric in shown:
                row = group.filter(pl.col("metric") == metric).row(0, named=True)
                p = None
                if significance.height and "p_value" in significance.columns:
                    match = significance.filter(
                        (pl.col("scenario") == scenario) & (pl.col("recommender") == recommender)
                        & (pl.col("backbone") == backbone) & (pl.col("metric") == metric) & (pl.col("k") == k))
                    p = match["p_value"][0] if match.height else None
                cells.append(_cell(row) + _stars(p))
            lines.append(f"| {recommender} | {backbone} | " + " | ".join(cells) + f" | {group['n'][0]} |")
        lines.append("")
    return "\n".join(lines)
