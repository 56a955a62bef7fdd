"""Report tables: the metrics table over systems, paired tests of each system against its random-embedding
twin, and the Markdown and HTML reports."""
from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

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
    return (pl.concat(rows).select(SYSTEM + [c for c in rows[0].columns if c not in SYSTEM])
            .sort(SYSTEM + ["metric", "k"]))


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
    lines = [f"# {title}", "", f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
             f"Mean over test users with 95% t-intervals; marks: Wilcoxon signed-rank test against the same "
             f"recommender on `{baseline_backbone}` embeddings (* p<.05, ** p<.01, *** p<.001, n.s. otherwise).", ""]
    for scenario in metrics["scenario"].unique(maintain_order=True).to_list():
        at_k = metrics.filter((pl.col("scenario") == scenario) & (pl.col("k") == k))
        lines += [f"## Scenario: {scenario} (k = {k})", "",
                  "| recommender | backbone | " + " | ".join(f"{METRIC_NAMES.get(m, m)}@{k}" for m in shown)
                  + " | users |",
                  "|---|---|" + "---|" * len(shown) + "---|"]
        for (recommender, backbone), group in at_k.group_by(["recommender", "backbone"], maintain_order=True):
            cells = []
            for metric in shown:
                row = group.filter(pl.col("metric") == metric).row(0, named=True)
                p = _p_value(significance, scenario, recommender, backbone, metric, k)
                cells.append(_cell(row) + _stars(p))
            lines.append(f"| {recommender} | {backbone} | " + " | ".join(cells) + f" | {group['n'][0]} |")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- HTML report

# Published numbers (DESIGN.md, "Reference numbers"): paper B (journal version), Music4All-Onion, hot scenario,
# cut-off 50. Another dataset, catalog size and user base: only the ordering of systems is comparable with ours.
REFERENCE_SOURCE = "paper B (journal), Music4All-Onion, hot scenario, k = 50"
REFERENCE_NUMBERS: tuple[dict, ...] = (
    {"system": "MusiCNN + BERT4Rec (best)", "hit_rate": 0.476, "recall": 0.063, "ndcg": 0.053},
    {"system": "MusiCNN + shallow", "hit_rate": 0.359, "recall": 0.035, "ndcg": 0.026},
    {"system": "MusiCNN + KNN", "hit_rate": 0.028, "recall": 0.001, "ndcg": 0.001},
    {"system": "pure CF (ELSA)", "hit_rate": 0.558, "recall": None, "ndcg": None},
)
METRIC_NAMES = {"hit_rate": "HitRate", "recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "mrr": "MRR",
                "map": "MAP"}

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td.name{text-align:left}.ci{color:#666;font-size:.85em}.sig{color:#b00;font-weight:bold}
.ns{color:#888}.note{color:#555;font-size:.9em}figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}
section.reference{background:#fafaf0;border:1px solid #e5e0b0;padding:0 1em 1em;margin-top:2em}"""


def _p_value(significance: pl.DataFrame, scenario: str, recommender: str, backbone: str, metric: str,
             k: int) -> float | None:
    if not significance.height or "p_value" not in significance.columns:
        return None
    match = significance.filter(
        (pl.col("scenario") == scenario) & (pl.col("recommender") == recommender)
        & (pl.col("backbone") == backbone) & (pl.col("metric") == metric) & (pl.col("k") == k))
    return match["p_value"][0] if match.height else None


def _html_cell(row: dict, p: float | None) -> str:
    text = f"{row['value']:.3f}"
    if row["ci_low"] is not None:
        text += f' <span class="ci">[{row["ci_low"]:.3f}, {row["ci_high"]:.3f}]</span>'
    stars = _stars(p)
    if stars:
        css = "ns" if "n.s." in stars else "sig"
        text += f' <span class="{css}" title="p = {p:.2g}">{html.escape(stars.strip())}</span>'
    return f"<td>{text}</td>"


def _relative(path: str | Path, relative_to: str | Path | None) -> str:
    path = Path(path)
    if relative_to is not None and path.is_absolute():
        path = Path(os.path.relpath(path, relative_to))
    return path.as_posix()


def html_report(
    metrics: pl.DataFrame,
    significance: pl.DataFrame,
    plots: dict[str, Path] | None = None,
    k: int = 50,
    shown: tuple[str, ...] = ("hit_rate", "recall", "ndcg"),
    title: str = "musicrec report",
    baseline_backbone: str = "random",
    relative_to: str | Path | None = None,
    sections: Sequence["Section"] = (),
) -> str:
    """A self-contained HTML page: the tables of `markdown_report` (mean, 95% CI, paired-test marks against the
    `baseline_backbone` twin), the study `sections` (cold start, artist similarity, tags), the figures in
    `plots` (caption -> PNG path; absolute paths are made relative to `relative_to`, the folder the page is
    written to, so the page and its PNGs move together), and the published reference numbers, labelled as
    Music4All-Onion numbers that are not comparable in absolute value."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>",
           f'<p class="note">Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Mean over test users with '
           f"95% t-intervals in brackets; marks: Wilcoxon signed-rank test against the same recommender on "
           f"<code>{e(baseline_backbone)}</code> embeddings (* p&lt;.05, ** p&lt;.01, *** p&lt;.001, n.s. "
           f"otherwise; no mark: the baseline itself or no twin).</p>"]
    for scenario in metrics["scenario"].unique(maintain_order=True).to_list():
        at_k = metrics.filter((pl.col("scenario") == scenario) & (pl.col("k") == k))
        out += [f"<h2>Scenario: {e(scenario)} (k = {k})</h2>", "<table>",
                "<tr><th>recommender</th><th>backbone</th>"
                + "".join(f"<th>{METRIC_NAMES.get(m, m)}@{k}</th>" for m in shown) + "<th>users</th></tr>"]
        for (recommender, backbone), group in at_k.group_by(["recommender", "backbone"], maintain_order=True):
            cells = []
            for metric in shown:
                rows = group.filter(pl.col("metric") == metric)
                if rows.is_empty():
                    cells.append("<td>–</td>")
                    continue
                p = _p_value(significance, scenario, recommender, backbone, metric, k)
                cells.append(_html_cell(rows.row(0, named=True), p))
            out.append(f'<tr><td class="name">{e(recommender)}</td><td class="name">{e(backbone)}</td>'
                       + "".join(cells) + f"<td>{group['n'][0]}</td></tr>")
        out.append("</table>")
    out += [section.html() for section in sections]
    if plots:
        out.append("<h2>Figures</h2>")
        for caption, path in plots.items():
            out.append(f'<figure><img src="{e(_relative(path, relative_to), quote=True)}" '
                       f'alt="{e(caption, quote=True)}">'
                       f"<figcaption>{e(caption)}</figcaption></figure>")
    out += ['<section class="reference" id="reference-numbers">',
            "<h2>Published reference numbers (Music4All-Onion, not the demo)</h2>",
            f'<p class="note">From {e(REFERENCE_SOURCE)}. These were measured on <strong>Music4All-Onion</strong> '
            "(a real catalog and real listeners), not on this demo catalog: they are not comparable in absolute "
            "value with the numbers above. Compare orderings (e.g. content KNN far below sequence models, pure CF "
            "strongest on hit rate), not magnitudes.</p>",
            "<table><tr><th>system</th>"
            + "".join(f"<th>{METRIC_NAMES[m]}@50</th>" for m in ("hit_rate", "recall", "ndcg"))
            + "</tr>"]
    for ref in REFERENCE_NUMBERS:
        cells = "".join("<td>–</td>" if ref[m] is None else f"<td>{ref[m]:.3f}</td>"
                        for m in ("hit_rate", "recall", "ndcg"))
        out.append(f'<tr><td class="name">{e(ref["system"])}</td>{cells}</tr>')
    out += ["</table></section>", "</body></html>"]
    return "\n".join(out) + "\n"


def markdown_plot_links(plots: dict[str, Path], relative_to: str | Path | None = None) -> str:
    """A Markdown "Figures" section linking (and inlining) each PNG of `plots` (caption -> path)."""
    if not plots:
        return ""
    lines = ["## Figures", ""]
    for caption, path in plots.items():
        lines.append(f"- [{caption}]({_relative(path, relative_to)})")
    lines.append("")
    for caption, path in plots.items():
        lines += [f"![{caption}]({_relative(path, relative_to)})", ""]
    return "\n".join(lines)


Cell = str | tuple[dict, float | None]  # plain text, or (metrics row, p-value for the marks)


@dataclass(frozen=True)
class Section:
    """One titled table of the report (a study's results), rendered alike to Markdown and HTML. A cell is
    text, or a `metrics` row with the p-value of its paired test, shown as mean [95% CI] and marks."""

    title: str
    note: str
    header: list[str]
    rows: list[list[Cell]]

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", self.note, "", "| " + " | ".join(self.header) + " |",
                 "|" + "---|" * len(self.header)]
        for row in self.rows:
            lines.append("| " + " | ".join(c if isinstance(c, str) else _cell(c[0]) + _stars(c[1]) for c in row) + " |")
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        e = html.escape
        out = [f"<h2>{e(self.title)}</h2>", f'<p class="note">{e(self.note)}</p>', "<table>",
               "<tr>" + "".join(f"<th>{e(h)}</th>" for h in self.header) + "</tr>"]
        for row in self.rows:
            out.append("<tr>" + "".join(f'<td class="name">{e(c)}</td>' if isinstance(c, str) else _html_cell(*c)
                                        for c in row) + "</tr>")
        return "\n".join(out + ["</table>"])


def artist_similarity_section(results: pl.DataFrame) -> Section:
    """The demo artist-similarity sweep (columns features, layers, ndcg200, ndcg200_published, best_epoch):
    test NDCG@200 per node-feature source and number of SAGE layers."""
    layers = sorted(results["layers"].unique())
    rows = [[features] + [f"{r['ndcg200']:.3f} ({r['ndcg200_published']:.3f})" for r in group.iter_rows(named=True)]
            for (features,), group in results.sort("layers").group_by(["features"], maintain_order=True)]
    return Section("Artist similarity (demo artist graph, test NDCG@200)",
                   "Standard IDCG; in brackets the published code's IDCG with one extra term (OLGA protocol). The "
                   "demo graph has few artists, so this is a smoke test; `make olga` runs the real OLGA sweep.",
                   ["features"] + [f"{n} layers" for n in layers], rows)


def cold_start_sections(table: pl.DataFrame, k: int = 20, reference: str = "acarec") -> list[Section]:
    """From the cold-start table (metrics rows + novelty + p_vs_reference): Recall and NDCG at `k` with 95% CIs
    per scenario, backbone and recommender over all relevant pairs, then the same for discovery pairs (the
    user never played the artist) and exploit pairs; marks are Wilcoxon tests against `reference`."""
    at_k = table.filter(pl.col("k") == k).sort(["scenario", "backbone", "recommender"], descending=[True, False, False])

    systems = ["scenario", "backbone", "recommender"]

    def cells(novelty: str, key: tuple) -> list[Cell]:
        """Recall and NDCG cells (with marks) and the user count of one system on one novelty's pairs."""
        group = at_k.filter((pl.col("novelty") == novelty) & _is(systems, key))
        if group.is_empty():
            return ["–", "–", "0"]
        chosen = [group.filter(pl.col("metric") == m).row(0, named=True) for m in ("recall", "ndcg")]
        return [(row, row["p_vs_reference"]) for row in chosen] + [str(group["n"][0])]

    keys = list(at_k.filter(pl.col("novelty") == "all").select(systems).unique(maintain_order=True).iter_rows())
    main = [list(key) + cells("all", key) for key in keys]
    split = [list(key) + cells("discovery", key) + cells("exploit", key) for key in keys]
    return [
        Section(f"Cold start (new tracks; k = {k})",
                "semi_cold: new tracks of artists with training tracks; cold: tracks of withheld (new) artists. "
                "Every system ranks all new tracks together; each scenario is judged on its own plays. Marks: "
                f"paired Wilcoxon test of the system against {reference} on the same users.",
                ["scenario", "backbone", "recommender", f"Recall@{k}", f"NDCG@{k}", "users"], main),
        Section(f"Cold start: discovery and exploit (k = {k})",
                "The same rankings judged on discovery pairs (the user had never played the track's artist) and "
                "on exploit pairs (the user had); a cold track's artist is new, so its pairs are all discovery.",
                ["scenario", "backbone", "recommender", f"discovery Recall@{k}", f"discovery NDCG@{k}", "users",
                 f"exploit Recall@{k}", f"exploit NDCG@{k}", "users"], split),
    ]


def _is(columns: list[str], values: tuple) -> pl.Expr:
    """Row filter: every column of `columns` equals its value in `values`."""
    return pl.all_horizontal([pl.col(c) == v for c, v in zip(columns, values)])


def tags_section(summary: pl.DataFrame) -> Section:
    """The tags summary (backbone, label, tracks, top_tags, top_probabilities): the most probable predicted
    tags per label, a check that the tagger hears the instrumentation."""
    rows = [[row["backbone"], row["label"], str(row["tracks"]),
             ", ".join(f"{t} ({p:.2f})" for t, p in zip(row["top_tags"], row["top_probabilities"]))]
            for row in summary.iter_rows(named=True)]
    return Section("What the tagging backbones hear",
                   "Mean tag probabilities over the tracks of each label (a track's first catalog tag: the demo's "
                   "instrumentation); the three most probable tags.",
                   ["backbone", "label", "tracks", "top tags (mean probability)"], rows)


def coverage_section(catalog_tracks: int, tables: dict[str, tuple[int, int]]) -> Section:
    """How many catalog tracks each backbone table covers: `tables` maps a table name to (tracks with a
    vector, tracks that failed in that backbone)."""
    rows = [[name, f"{covered:,} / {catalog_tracks:,}", f"{covered / catalog_tracks:.1%}" if catalog_tracks else "–",
             f"{failed:,}"] for name, (covered, failed) in tables.items()]
    return Section("Coverage of the backbone tables",
                   "Catalog tracks with a vector in each table (tracks that fail to decode at ingestion are in no "
                   "table; a track a backbone fails on is listed under failed and left out of that table only).",
                   ["table", "tracks", "share", "failed"], rows)
