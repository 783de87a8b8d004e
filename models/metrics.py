"""Metrics, defined once for training, promotion and the API's model card.

Classification quality is judged on ranking (ROC AUC, PR AUC) *and* on probabilities
(log loss, Brier, expected calibration error), because managers sum probabilities into
forecasts. Regressions are judged on errors in days and on the honesty of their
10–90% intervals (coverage should be near 80%, at the smallest width).
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    median_absolute_error,
    roc_auc_score,
    root_mean_squared_error,
)

PREFIX_BUCKETS = (1, 3, 6, 11, 21)  # bucket starts: 1-2, 3-5, 6-10, 11-20, 21+


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Weighted mean |observed rate - mean probability| over equal-width probability bins."""
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        inside = bins == b
        total += inside.sum() * abs(y[inside].mean() - p[inside].mean())
    return float(total / len(y)) if len(y) else float("nan")


def ece_sampling_floor(p: np.ndarray, cases: np.ndarray, draws: int = 100,
                       seed: int = 0) -> float:
    """The ECE a perfectly calibrated model with these probabilities would show on this
    many test prefixes, from sampling alone (median over ``draws``).

    A binned ECE is never 0 on a finite test set, and the prefixes of one case share its
    label, so a few hundred test cases leave it far above 0 however good the model: this
    says how far. Labels are drawn with one uniform number per case (a prefix is won when
    its case's number is below its probability), so each prefix is won with exactly its
    probability and a case's prefixes mostly agree, as real labels do."""
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    if len(p) == 0:
        return float("nan")
    case = pd.factorize(np.asarray(cases))[0]
    rng = np.random.default_rng(seed)
    found = [expected_calibration_error(rng.random(case.max() + 1)[case] < p, p)
             for _ in range(draws)]
    return float(np.median(found))


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    both_classes = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, p)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both_classes else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "n": float(len(y)),
    }


def regression_metrics(y: np.ndarray, point: np.ndarray, lower: np.ndarray | None = None,
                       upper: np.ndarray | None = None) -> dict[str, float]:
    y = np.asarray(y, dtype=float)
    point = np.asarray(point, dtype=float)
    out = {
        "mae_days": float(mean_absolute_error(y, point)),
        "rmse_days": float(root_mean_squared_error(y, point)),
        "median_ae_days": float(median_absolute_error(y, point)),
        "n": float(len(y)),
    }
    if lower is not None and upper is not None:
        lower = np.asarray(lower, dtype=float)
        upper = np.asarray(upper, dtype=float)
        out["coverage_80"] = float(np.mean((y >= lower) & (y <= upper)))
        out["interval_width_days"] = float(np.mean(upper - lower))
    return out


def prefix_bucket(prefix_len: pd.Series | np.ndarray) -> np.ndarray:
    """Readable bucket labels ('1-2', '3-5', ...) for per-prefix-length metrics."""
    k = np.asarray(prefix_len)
    starts = np.array(PREFIX_BUCKETS)
    idx = np.searchsorted(starts, k, side="right") - 1
    labels = [f"{s}-{e - 1}" for s, e in itertools.pairwise(starts)]
    labels.append(f"{starts[-1]}_plus")
    return np.array(labels, dtype=object)[idx]


def bucket_start(label: object) -> int:
    """The first prefix length of a bucket label, for sorting ('21_plus' -> 21)."""
    return int(re.split(r"[-_]", str(label))[0])


def by_bucket(prefix_len: np.ndarray, compute, *arrays: np.ndarray) -> dict[str, dict[str, float]]:
    """Apply a metric function within each prefix-length bucket."""
    buckets = prefix_bucket(prefix_len)
    out = {}
    order = np.argsort([bucket_start(b) for b in pd.unique(buckets)])
    for bucket in pd.unique(buckets)[order]:
        inside = buckets == bucket
        if inside.sum() >= 20:
            out[str(bucket)] = compute(*(a[inside] for a in arrays))
    return out
