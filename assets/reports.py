"""Report assets: the combined metrics table, the significance table and the Markdown report."""

import dagster as dg
import polars as pl

from assets.automation import RERUN_WHEN_STALE
from assets.experiment import BASELINE_BACKBONE, HEADLINE_K, hot_systems
from catalog.io import atomic_path
from evaluation.report import markdown_report, metrics_table, significance_table
from pipelines.resources import StorageResource

EVALUATIONS = [f"eval_{r}__{b}" for r, b in hot_systems()]


@dg.asset(group_name="reports", code_version="1", automation_condition=RERUN_WHEN_STALE, ins={name: dg.AssetIn(name) for name in EVALUATIONS})
def per_user_metrics_all(**evaluations: pl.DataFrame) -> pl.DataFrame:
    """Every system's per-user metrics in one table (user_id, metric, k, value, backbone, recommender, scenario)."""
    return pl.concat(list(evaluations.values()))


@dg.asset(group_name="reports", code_version="1", automation_condition=RERUN_WHEN_STALE)
def metrics(per_user_metrics_all: pl.DataFrame) -> pl.DataFrame:
    """The `metrics` contract table: mean, 95% CI and n per system, metric and k."""
    return metrics_table(per_user_metrics_all, experiment="backbone_x_recommender", dataset="demo")


@dg.asset(group_name="reports", code_version="1", automation_condition=RERUN_WHEN_STALE)
def significance(per_user_metrics_all: pl.DataFrame) -> pl.DataFrame:
    """Paired Wilcoxon tests of each system against its random-embedding twin."""
    return significance_table(per_user_metrics_all, baseline_backbone=BASELINE_BACKBONE)


@dg.asset(group_name="reports", code_version="1", automation_condition=RERUN_WHEN_STALE)
def report(metrics: pl.DataFrame, significance: pl.DataFrame, storage: StorageResource) -> dg.MaterializeResult:
    """The Markdown report at storage/reports/report.md."""
    text = markdown_report(metrics, significance, k=HEADLINE_K, baseline_backbone=BASELINE_BACKBONE)
    path = storage.path("reports", "report.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return dg.MaterializeResult(metadata={"path": str(path), "preview": dg.MetadataValue.md(text)})
