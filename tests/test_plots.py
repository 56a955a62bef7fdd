"""Report figures (evaluation/plots.py) and the HTML report (evaluation/report.html_report)."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from evaluation.plots import (
    bar_size,
    bar_with_ci,
    figure_pixels,
    heatmap,
    heatmap_size,
    layer_sweep_plot,
    report_figures,
)
from evaluation.report import (
    REFERENCE_NUMBERS,
    Section,
    cold_start_sections,
    html_report,
    markdown_plot_links,
    metrics_table,
    significance_table,
)

RECOMMENDERS = ("knn", "shallow")
BACKBONES = ("random", "handcrafted", "musicnn_mtt")
CF = ("popularity", "ease")


def _per_user(n_users: int = 30, seed: int = 0) -> pl.DataFrame:
    """Per-user metrics of 2 content recommenders x 3 backbones + 2 CF baselines (backbone "none")."""
    rng = np.random.default_rng(seed)
    systems = [(r, b) for r in RECOMMENDERS for b in BACKBONES] + [(r, "none") for r in CF]
    rows = []
    for index, (recommender, backbone) in enumerate(systems):
        for metric in ("hit_rate", "recall", "ndcg"):
            for k in (10, 50):
                values = np.clip(rng.normal(0.1 + 0.05 * index, 0.1, n_users), 0, 1)
                rows += [{"user_id": u, "metric": metric, "k": k, "value": float(v), "recommender": recommender,
                          "backbone": backbone, "scenario": "hot"} for u, v in enumerate(values)]
    return pl.DataFrame(rows, schema_overrides={"k": pl.Int32})


@pytest.fixture(scope="module")
def tables():
    per_user = _per_user()
    return metrics_table(per_user, experiment="test", dataset="synthetic"), significance_table(per_user)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_heatmap_is_a_png_of_the_expected_size(tables, tmp_path):
    metrics, _ = tables
    path = heatmap(metrics, "ndcg", 50, "hot", tmp_path / "heat.png")
    assert path.stat().st_size > 5_000
    n_recommenders = len(RECOMMENDERS) + len(CF)
    assert png_size(path) == figure_pixels(heatmap_size(n_recommenders, len(BACKBONES) + 1))


def test_bar_with_ci_is_a_png_of_the_expected_size(tables, tmp_path):
    metrics, _ = tables
    path = bar_with_ci(metrics, "hit_rate", 50, "hot", tmp_path / "sub" / "bars.png")
    assert path.stat().st_size > 5_000
    assert png_size(path) == figure_pixels(bar_size(len(RECOMMENDERS) * len(BACKBONES) + len(CF)))


def test_bar_with_ci_without_intervals(tmp_path):
    """A single user: intervals undefined (null), bars still drawn."""
    metrics = metrics_table(_per_user(n_users=1), experiment="test", dataset="synthetic")
    assert metrics["ci_low"].is_null().all()
    path = bar_with_ci(metrics, "ndcg", 10, "hot", tmp_path / "bars.png")
    assert path.stat().st_size > 5_000


def test_plots_reject_an_empty_selection_and_a_missing_path(tables, tmp_path):
    metrics, _ = tables
    with pytest.raises(ValueError, match="no metrics rows"):
        heatmap(metrics, "ndcg", 20, "hot", tmp_path / "x.png")
    with pytest.raises(ValueError, match="no metrics rows"):
        bar_with_ci(metrics, "ndcg", 50, "cold", tmp_path / "x.png")
    with pytest.raises(TypeError):
        heatmap(metrics, "ndcg", 50, "hot")
    assert not list(tmp_path.iterdir())


def test_html_report_has_every_system_the_figures_and_the_reference_section(tables, tmp_path):
    metrics, significance = tables
    figures = report_figures(metrics, tmp_path, k=50)
    assert len(figures) == 3 and all(p.stat().st_size > 5_000 for p in figures.values())
    page = html_report(metrics, significance, figures, k=50, relative_to=tmp_path)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for recommender in RECOMMENDERS:
        for backbone in BACKBONES:
            assert f'<td class="name">{recommender}</td><td class="name">{backbone}</td>' in page
    for recommender in CF:
        assert f'<td class="name">{recommender}</td><td class="name">none</td>' in page
    for path in figures.values():
        assert f'src="{path.name}"' in page  # relative to the page's folder
    assert 'id="reference-numbers"' in page and "Music4All-Onion" in page and "not comparable" in page
    for ref in REFERENCE_NUMBERS:
        assert ref["system"] in page
    for number in ("0.476", "0.063", "0.053", "0.359", "0.035", "0.026", "0.028", "0.001", "0.558"):
        assert number in page
    assert "[" in page and "]" in page  # CIs shown
    assert "***" in page or "n.s." in page  # significance marks


def test_study_section_renders_the_same_cells_and_marks_in_markdown_and_html(tables):
    row = {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    section = Section("Cold start", "a note", ["system", "Recall@20"], [["acarec", (row, None)], ["knn", (row, 5e-4)]])
    text = section.markdown()
    assert text.startswith("## Cold start\n\na note\n\n| system | Recall@20 |\n|---|---|\n")
    assert "| acarec | 0.500 [0.400, 0.600] |" in text and "| knn | 0.500 [0.400, 0.600]*** |" in text
    page = html_report(*tables, sections=[section])
    assert "<h2>Cold start</h2>" in page and page.index("<h2>Cold start</h2>") < page.index('id="reference-numbers"')
    assert ('<td class="name">knn</td><td>0.500 <span class="ci">[0.400, 0.600]</span> '
            '<span class="sig" title="p = 0.0005">***</span></td>') in page


def test_cold_start_sections_split_discovery_and_exploit():
    """One row per system in both tables; a scenario without exploit pairs (cold) shows dashes there."""
    def row(scenario, novelty, recommender, metric, value, p):
        return {"experiment": "cold_start", "dataset": "demo", "backbone": "handcrafted", "recommender": recommender,
                "scenario": scenario, "metric": metric, "k": 20, "value": value, "ci_low": value - 0.1,
                "ci_high": value + 0.1, "n": 10 if novelty == "exploit" else 5, "novelty": novelty, "p_vs_reference": p}
    rows = [row(s, nov, r, m, v, None if r == "acarec" else 0.02)
            for s, novelties in (("semi_cold", ("all", "discovery", "exploit")), ("cold", ("all", "discovery")))
            for nov in novelties for r, v in (("acarec", 0.8), ("knn", 0.3)) for m in ("recall", "ndcg")]
    main, split = cold_start_sections(pl.DataFrame(rows), k=20)
    assert [r[:3] for r in main.rows] == [["semi_cold", "handcrafted", "acarec"], ["semi_cold", "handcrafted", "knn"],
                                          ["cold", "handcrafted", "acarec"], ["cold", "handcrafted", "knn"]]
    assert split.header[3:] == ["discovery Recall@20", "discovery NDCG@20", "users", "exploit Recall@20",
                                "exploit NDCG@20", "users"]
    text = split.markdown()
    assert "| semi_cold | handcrafted | knn | 0.300 [0.200, 0.400]* | 0.300 [0.200, 0.400]* | 5 | 0.300" in text
    assert "| cold | handcrafted | acarec | 0.800 [0.700, 0.900] | 0.800 [0.700, 0.900] | 5 | – | – | 0 |" in text
    assert "against acarec" in main.note  # the default reference
    other, _ = cold_start_sections(pl.DataFrame(rows), k=20, reference="knn")
    assert "against knn" in other.note and "acarec" not in other.note


def test_markdown_plot_links_are_relative(tables, tmp_path):
    metrics, _ = tables
    figures = report_figures(metrics, tmp_path / "reports", k=50)
    text = markdown_plot_links(figures, relative_to=tmp_path / "reports")
    for caption, path in figures.items():
        assert f"[{caption}]({path.name})" in text
    assert markdown_plot_links({}) == ""


def test_layer_sweep_plot_draws_both_metric_variants_per_feature_source(tmp_path):
    sweep = pl.DataFrame({"features": ["random"] * 3 + ["handcrafted"] * 3, "layers": [0, 1, 2] * 2,
                          "ndcg200": [0.1, 0.3, 0.4, 0.2, 0.4, 0.5],
                          "ndcg200_published": [0.06, 0.2, 0.25, 0.12, 0.25, 0.3]})
    path = layer_sweep_plot(sweep, tmp_path / "sweep.png")
    assert path.stat().st_size > 5_000
    assert png_size(path) == figure_pixels((7.0, 4.5))
    with pytest.raises(ValueError, match="no sweep results"):
        layer_sweep_plot(sweep.head(0), tmp_path / "empty.png")
