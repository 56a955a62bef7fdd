"""Confidence intervals, paired tests, Holm correction, metric summaries and system comparisons."""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as scipy_stats

from catalog.schemas import METRICS, validate_table
from evaluation.stats import compare_systems, holm, mean_ci, paired_test, summarize


def test_mean_ci_matches_student_t_by_hand():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3; s = sqrt(10 / 4) = 1.581139; s / sqrt(5) = 0.707107; t_{0.975, 4} = 2.776445 -> half width 1.963243
    mean, low, high = mean_ci(values)
    assert mean == 3.0
    assert (low, high) == pytest.approx((3 - 1.963243, 3 + 1.963243), abs=1e-6)
    half = scipy_stats.t.ppf(0.975, 4) * math.sqrt(2.5) / math.sqrt(5)
    assert (low, high) == pytest.approx((3 - half, 3 + half), abs=1e-12)
    # a 90% interval is narrower: t_{0.95, 4} = 2.131847 -> half width 1.507443
    assert mean_ci(values, confidence=0.90)[1:] == pytest.approx((3 - 1.507443, 3 + 1.507443), abs=1e-6)


def test_mean_ci_edge_cases():
    mean, low, high = mean_ci(np.array([0.25]))
    assert mean == 0.25 and math.isnan(low) and math.isnan(high)
    assert mean_ci(np.array([0.5, 0.5, 0.5])) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="at least one"):
        mean_ci(np.array([]))
    with pytest.raises(ValueError, match="finite"):
        mean_ci(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="confidence"):
        mean_ci(np.array([1.0, 2.0]), confidence=95)


def test_paired_test_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    shifted = a + 0.3 + rng.normal(scale=0.5, size=200)
    for method in ("wilcoxon", "t"):
        assert paired_test(a, shifted, method=method) < 0.01
        assert paired_test(shifted, a, method=method, alternative="greater") < 0.01
        assert paired_test(shifted, a, method=method, alternative="less") > 0.5
    independent_noise = a + rng.normal(scale=0.5, size=200)
    assert paired_test(a, independent_noise) > 0.01


def test_paired_t_matches_the_formula():
    a = np.array([0.1, 0.4, 0.35, 0.8, 0.2])
    b = np.array([0.2, 0.5, 0.30, 0.9, 0.4])
    d = a - b  # [-0.1, -0.1, 0.05, -0.1, -0.2]
    t = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))
    assert paired_test(a, b, method="t") == pytest.approx(2 * scipy_stats.t.sf(abs(t), d.size - 1), rel=1e-12)


def test_paired_test_identical_systems_give_p_one_and_bad_input_raises():
    values = np.array([0.0, 0.5, 1.0, 0.25])
    assert paired_test(values, values.copy()) == 1.0
    assert paired_test(values, values.copy(), method="t") == 1.0
    with pytest.raises(ValueError, match="aligned"):
        paired_test(values, values[:3])
    with pytest.raises(ValueError, match="method"):
        paired_test(values, values + 1, method="sign")


def test_holm_adjustment_by_hand():
    # sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> monotone max 0.06
    assert holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]).tolist() == pytest.approx([1.0, 1.0])  # capped at 1
    with pytest.raises(ValueError):
        holm([0.1, 1.5])


def _per_user(values: dict[str, float], metric: str = "recall", k: int = 10) -> pl.DataFrame:
    return pl.DataFrame({
        "user_id": list(values),
        "metric": [metric] * len(values),
        "k": pl.Series([k] * len(values), dtype=pl.Int32),
        "value": pl.Series(list(values.values()), dtype=pl.Float64),
    })


def test_summarize_rows_follow_the_metrics_contract():
    per_user = pl.concat([
        _per_user({"u1": 0.0, "u2": 0.5, "u3": 1.0}, "recall", 10),
        _per_user({"u1": 1.0, "u2": 1.0, "u3": 0.0}, "hit_rate", 10),
        _per_user({"u1": 0.2}, "ndcg", 5),
    ])
    table = summarize(per_user, experiment="exp1", backbone="musicnn", scenario="hot")
    assert table.columns == METRICS.names
    assert table.dtypes == [pl.String] * 6 + [pl.Int32, pl.Float64, pl.Float64, pl.Float64, pl.Int64]
    validate_table(table.to_arrow(), "metrics")  # raises SchemaError on a contract break
    assert table.select("metric", "k").rows() == [("hit_rate", 10), ("ndcg", 5), ("recall", 10)]
    recall = table.row(2, named=True)
    assert recall["experiment"] == "exp1" and recall["dataset"] == "" and recall["recommender"] == ""
    # values [0, 0.5, 1]: mean 0.5, s = 0.5, half width = t_{0.975, 2} * 0.5 / sqrt(3) = 4.302653 * 0.288675 = 1.242068
    assert recall["value"] == 0.5 and recall["n"] == 3
    assert (recall["ci_low"], recall["ci_high"]) == pytest.approx((0.5 - 1.242068, 0.5 + 1.242068), abs=1e-6)
    lone = table.row(1, named=True)
    assert lone["value"] == 0.2 and lone["n"] == 1 and lone["ci_low"] is None and lone["ci_high"] is None
    with pytest.raises(ValueError, match="unknown label"):
        summarize(per_user, model="x")


def test_compare_systems_uses_the_user_intersection():
    rng = np.random.default_rng(1)
    a_values = {f"u{i}": float(v) for i, v in enumerate(rng.uniform(size=60))}
    b_values = {f"u{i}": a_values.get(f"u{i}", 0.0) + 0.2 for i in range(5, 70)}  # u0..u4 only in A, u60.. only in B
    result = compare_systems(_per_user(a_values), _per_user(b_values))
    assert result.columns == ["metric", "k", "mean_a", "mean_b", "delta", "p_value", "n"]
    row = result.row(0, named=True)
    shared = [f"u{i}" for i in range(5, 60)]
    a = np.array([a_values[u] for u in shared])
    b = np.array([b_values[u] for u in shared])
    assert row["n"] == 55
    assert row["mean_a"] == pytest.approx(a.mean()) and row["mean_b"] == pytest.approx(b.mean())
    assert row["delta"] == pytest.approx(0.2)
    assert row["p_value"] == pytest.approx(paired_test(a, b)) and row["p_value"] < 1e-6
    same = compare_systems(_per_user(a_values), _per_user(a_values), method="t")
    assert same.item(0, "p_value") == 1.0 and same.item(0, "delta") == 0.0
    with pytest.raises(ValueError, match="share no"):
        compare_systems(_per_user(a_values), _per_user({"other": 1.0}))
