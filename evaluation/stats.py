"""Confidence intervals, paired significance tests and metric summaries (DESIGN.md, "Metrics").

Inputs are the per-user tables of `evaluation.metrics.per_user_metrics` (user_id, metric, k, value); outputs
are rows of the `metrics` contract (catalog/schemas.py) and system-comparison tables.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa
from scipy import stats as scipy_stats

from catalog.schemas import METRICS, validate_table

PairedMethod = Literal["wilcoxon", "t"]
Alternative = Literal["two-sided", "less", "greater"]
LABEL_COLUMNS: tuple[str, ...] = ("experiment", "dataset", "backbone", "recommender", "scenario")
PER_USER_COLUMNS: tuple[str, ...] = ("user_id", "metric", "k", "value")


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` (shape (n,)) with its two-sided Student-t interval.

    Interval = mean ± t_{(1+confidence)/2, n-1} · s / sqrt(n), s the sample standard deviation (ddof=1).
    With n = 1 the interval is undefined and low = high = nan; constant values give low = high = mean.
    Raises ValueError for an empty array, non-finite values or a confidence outside (0, 1).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("mean_ci needs at least one value")
    if not np.all(np.isfinite(values)):
        raise ValueError("mean_ci: values must be finite")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    mean = float(values.mean())
    n = values.size
    if n == 1:
        return mean, float("nan"), float("nan")
    half_width = scipy_stats.t.ppf((1.0 + confidence) / 2.0, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return mean, float(mean - half_width), float(mean + half_width)


def paired_test(
    a: np.ndarray, b: np.ndarray, method: PairedMethod = "wilcoxon", alternative: Alternative = "two-sided"
) -> float:
    """p-value of a paired test between two systems scored on the same users (`a[i]`, `b[i]`: user i).

    `method`: "wilcoxon" (signed-rank, zero differences dropped) or "t" (paired Student t). `alternative`
    follows scipy ("greater": a tends to exceed b). When every difference is zero the systems are
    indistinguishable and p = 1.0. Raises ValueError for arrays of different shape, empty or non-finite input.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired_test needs aligned arrays, got {a.size} and {b.size} values")
    if a.size == 0:
        raise ValueError("paired_test needs at least one pair")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("paired_test: values must be finite")
    if np.all(a == b):
        return 1.0
    if method == "wilcoxon":
        return float(scipy_stats.wilcoxon(a, b, alternative=alternative).pvalue)
    if method == "t":
        return float(scipy_stats.ttest_rel(a, b, alternative=alternative).pvalue)
    raise ValueError(f"paired test method must be 'wilcoxon' or 't', got {method!r}")


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (same order as the input, shape (m,), capped at 1).

    Sorted ascending p_(1) ≤ … ≤ p_(m): adjusted_(i) = max_{j≤i} min(1, (m - j + 1) · p_(j)).
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    if np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
        raise ValueError("holm: p-values must lie in [0, 1]")
    order = np.argsort(p, kind="stable")
    m = p.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def _check_per_user(per_user: pl.DataFrame, name: str) -> None:
    missing = [c for c in PER_USER_COLUMNS if c not in per_user.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; expected the output of per_user_metrics")
    if per_user.select(["user_id", "metric", "k"]).is_duplicated().any():
        raise ValueError(f"{name}: more than one value per (user_id, metric, k)")


def summarize(per_user: pl.DataFrame, confidence: float = 0.95, **labels: str) -> pl.DataFrame:
    """Rows of the `metrics` contract, one per (metric, k): mean over users with its t-interval and n users.

    `labels` fill the string columns experiment, dataset, backbone, recommender, scenario (missing ones are
    ""; other names raise ValueError). ci_low / ci_high are null when n = 1 (interval undefined). Rows are
    sorted by metric, k.
    """
    unknown = sorted(set(labels) - set(LABEL_COLUMNS))
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; known: {list(LABEL_COLUMNS)}")
    _check_per_user(per_user, "summarize")
    rows = []
    for (metric, k), group in per_user.group_by(["metric", "k"]):
        mean, low, high = mean_ci(group["value"].to_numpy(), confidence)
        interval_defined = group.height > 1
        rows.append({
            **{column: str(labels.get(column, "")) for column in LABEL_COLUMNS},
            "metric": metric,
            "k": int(k),
            "value": mean,
            "ci_low": low if interval_defined else None,
            "ci_high": high if interval_defined else None,
            "n": group.height,
        })
    table = validate_table(pa.Table.from_pylist(rows, schema=METRICS), "metrics")
    return pl.from_arrow(table).sort(["metric", "k"])


def compare_systems(
    per_user_a: pl.DataFrame,
    per_user_b: pl.DataFrame,
    method: PairedMethod = "wilcoxon",
    alternative: Alternative = "two-sided",
) -> pl.DataFrame:
    """Paired comparison of systems A and B, one row per (metric, k) present in both tables.

    Users are aligned on user_id and only the intersection of the two user sets is compared (a user missing
    from one side is left out, not scored 0; run both systems on the same evaluated users to avoid this).
    Columns: metric str, k int32, mean_a, mean_b, delta = mean_b - mean_a (float64), p_value (float64, from
    `paired_test(a, b, method, alternative)`), n (int64, users compared). Sorted by metric, k. Raises
    ValueError when the tables share no (user_id, metric, k).
    """
    _check_per_user(per_user_a, "compare_systems (a)")
    _check_per_user(per_user_b, "compare_systems (b)")
    joined = per_user_a.select(PER_USER_COLUMNS).join(
        per_user_b.select(PER_USER_COLUMNS), on=["user_id", "metric", "k"], how="inner", suffix="_b"
    )
    if joined.height == 0:
        raise ValueError("compare_systems: the two tables share no (user_id, metric, k)")
    rows = []
    for (metric, k), group in joined.group_by(["metric", "k"]):
        a = group["value"].to_numpy()
        b = group["value_b"].to_numpy()
        rows.append({
            "metric": metric,
            "k": int(k),
            "mean_a": float(a.mean()),
            "mean_b": float(b.mean()),
            "delta": float(b.mean() - a.mean()),
            "p_value": paired_test(a, b, method, alternative),
            "n": group.height,
        })
    schema = {"metric": pl.String, "k": pl.Int32, "mean_a": pl.Float64, "mean_b": pl.Float64,
              "delta": pl.Float64, "p_value": pl.Float64, "n": pl.Int64}
    return pl.DataFrame(rows, schema=schema).sort(["metric", "k"])
