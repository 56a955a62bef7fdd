"""Report assets: the combined metrics table, the significance table and the Markdown report."""

import dagster as dg
import polars as pl

from assets.automation import RERUN_WHEN_STALE
from assets.experiment import Experiment
from assets.resources import StorageResource
from assets.retries import retried_when_transient
from catalog.io import atomic_path
from embedders.runner import embedding_files, read_backbone_failures
from evaluation.plots import bar_with_ci, layer_sweep_plot, report_figures
from evaluation.report import (
    artist_similarity_section,
    cold_start_sections,
    coverage_section,
    html_report,
    markdown_plot_links,
    markdown_report,
    metrics_table,
    significance_table,
    tags_section,
)


def build_per_user_metrics_asset(experiment: Experiment) -> dg.AssetsDefinition:
    """The asset gathering the per-user metrics of every (recommender, backbone) system."""
    systems = experiment.hot_systems()

    @dg.asset(group_name="reports", code_version="1", automation_condition=RERUN_WHEN_STALE,
              ins={f"eval_{r}__{b}": dg.AssetIn(f"eval_{r}__{b}") for r, b in systems})
    @retried_when_transient
    def per_user_metrics_all(**evaluations: pl.DataFrame) -> pl.DataFrame:
        """Every system's per-user metrics in one table (user_id, metric, k, value, backbone, recommender, scenario)."""
        return pl.concat(list(evaluations.values()))

    return per_user_metrics_all


def build_metrics_assets(experiment: Experiment) -> list[dg.AssetsDefinition]:
    """`metrics` (mean, CI and n per system, metric and k) and `significance` (paired tests against the twin)."""
    twin = experiment.twin()

    @dg.asset(group_name="reports", code_version="2", automation_condition=RERUN_WHEN_STALE)
    @retried_when_transient
    def metrics(per_user_metrics_all: pl.DataFrame) -> pl.DataFrame:
        """The `metrics` contract table: mean, 95% CI and n per system, metric and k."""
        return metrics_table(per_user_metrics_all, experiment="backbone_x_recommender", dataset=experiment.name)

    @dg.asset(group_name="reports", code_version=f"2:{twin}", automation_condition=RERUN_WHEN_STALE)
    @retried_when_transient
    def significance(per_user_metrics_all: pl.DataFrame) -> pl.DataFrame:
        """Paired Wilcoxon tests of each system against its twin on the experiment's twin backbone table."""
        return significance_table(per_user_metrics_all, baseline_backbone=twin)

    return [metrics, significance]


def table_coverage(storage: StorageResource, table: str) -> tuple[int, int]:
    """(tracks with a vector, failed tracks) of backbone table `table`, from its files (ids only)."""
    folder = storage.path("embeddings", table)
    covered = sum(pl.read_parquet(f, columns=["track_id"]).height for f in embedding_files(folder))
    return covered, read_backbone_failures(folder).height


def build_report_asset(experiment: Experiment, sections: tuple[str, ...]) -> dg.AssetsDefinition:
    """The report asset. `sections` names the optional parts it includes: any of "cold_start" (reads
    `cold_start_table`), "artist_similarity" (reads `artist_similarity_demo`) and "tags" (reads `tags_summary`)."""
    headline_k, twin = experiment.metrics.headline_k, experiment.twin()
    cold_k, reference = experiment.cold_start.k, experiment.cold_start.reference
    section_inputs = {"cold_start": "cold_start_table", "artist_similarity": "artist_similarity_demo",
                      "tags": "tags_summary"}
    unknown = sorted(set(sections) - set(section_inputs))
    if unknown:
        raise ValueError(f"unknown report sections {unknown}; known: {sorted(section_inputs)}")
    ins = {section_inputs[s]: dg.AssetIn(section_inputs[s]) for s in sections}

    tables = list(experiment.backbones)

    @dg.asset(group_name="reports", code_version=f"8:{headline_k}:{twin}:{cold_k}:{reference}",
              automation_condition=RERUN_WHEN_STALE, ins={**ins, "tracks": dg.AssetIn("tracks")},
              deps=[f"embeddings_{t}" for t in tables])
    @retried_when_transient
    def report(metrics: pl.DataFrame, significance: pl.DataFrame, tracks: pl.DataFrame, storage: StorageResource,
               **studies: pl.DataFrame) -> dg.MaterializeResult:
        """The Markdown report at storage/reports/report.md, its HTML twin report.html (the same tables) and the
        PNG figures beside them. Tables: hot start; cold start over all pairs and split into discovery /
        exploit; artist similarity; tags. Figures: hot heatmap and bars with CIs, cold-start Recall bars with
        CIs per scenario, artist-similarity NDCG@200 by layers."""
        study_sections = [coverage_section(tracks.height, {t: table_coverage(storage, t) for t in tables})]
        if "cold_start_table" in studies:
            study_sections += cold_start_sections(studies["cold_start_table"], cold_k, reference)
        if "artist_similarity_demo" in studies:
            study_sections.append(artist_similarity_section(studies["artist_similarity_demo"]))
        if "tags_summary" in studies:
            study_sections.append(tags_section(studies["tags_summary"]))
        text = "\n".join([markdown_report(metrics, significance, k=headline_k, baseline_backbone=twin)]
                         + [section.markdown() for section in study_sections])
        path = storage.path("reports", "report.md")
        path.parent.mkdir(parents=True, exist_ok=True)
        figures = report_figures(metrics, path.parent, headline_k)
        if "cold_start_table" in studies:
            cold = studies["cold_start_table"].filter(pl.col("novelty") == "all")
            for scenario in cold["scenario"].unique(maintain_order=True).to_list():
                figures[f"{scenario}: Recall@{cold_k} per system, 95% CI"] = bar_with_ci(
                    cold, "recall", cold_k, scenario, path.parent / f"bars_{scenario}_recall_at{cold_k}.png")
        if "artist_similarity_demo" in studies:
            figures["artist similarity: test NDCG@200 by SAGE layers"] = layer_sweep_plot(
                studies["artist_similarity_demo"], path.parent / "artist_similarity_layers.png")
        with atomic_path(path) as tmp:
            tmp.write_text(text + "\n" + markdown_plot_links(figures, relative_to=path.parent))
        html_path = path.with_suffix(".html")
        with atomic_path(html_path) as tmp:
            tmp.write_text(html_report(metrics, significance, figures, k=headline_k, baseline_backbone=twin,
                                       relative_to=path.parent, sections=study_sections))
        return dg.MaterializeResult(metadata={"path": str(path), "html": str(html_path),
                                              "figures": dg.MetadataValue.json({c: str(f) for c, f in figures.items()}),
                                              "preview": dg.MetadataValue.md(text)})

    return report
