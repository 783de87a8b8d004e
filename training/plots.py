"""Diagnostic plots logged with every run: what a data scientist looks at first."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve

from models.metrics import bucket_start, prefix_bucket


def calibration_plot(y: np.ndarray, p: np.ndarray, title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(5, 5))
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect")
    ax.plot(predicted, observed, marker="o", label="model")
    ax.set(xlabel="predicted P(win)", ylabel="observed win rate", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def metric_by_prefix_plot(buckets: dict[str, dict[str, float]], metric: str,
                          baselines: dict[str, float] | None, title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(buckets)
    ax.plot(names, [buckets[b][metric] for b in names], marker="o", label="model")
    for label, value in (baselines or {}).items():
        ax.axhline(value, ls="--", lw=1, label=f"{label} (overall)")
    ax.set(xlabel="prefix length (events)", ylabel=metric, title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def residual_plot(test: pd.DataFrame, title: str) -> Figure:
    """Residual histogram and interval coverage per prefix-length bucket."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    residual = test["y"] - test["prediction"]
    left.hist(residual.clip(residual.quantile(0.01), residual.quantile(0.99)), bins=50)
    left.set(xlabel="actual - predicted (days)", ylabel="prefixes", title=f"{title}: residuals")
    inside = (test["y"] >= test["lower"]) & (test["y"] <= test["upper"])
    coverage = inside.groupby(prefix_bucket(test["prefix_len"])).mean()
    coverage = coverage.loc[sorted(coverage.index, key=bucket_start)]
    right.bar(coverage.index.astype(str), coverage.to_numpy())
    right.axhline(0.8, ls="--", color="grey", label="target 80%")
    right.set(xlabel="prefix length", ylabel="share inside 10-90% interval", ylim=(0, 1),
              title="interval coverage")
    right.legend()
    fig.tight_layout()
    return fig


def shap_summary_plot(values: np.ndarray, X: pd.DataFrame, title: str) -> Figure:
    """SHAP beeswarm (shap's own plot); categories are shown by their codes for colour."""
    import shap

    coded = X.copy()
    for column in coded.columns:
        if isinstance(coded[column].dtype, pd.CategoricalDtype):
            coded[column] = coded[column].cat.codes.replace(-1, np.nan).astype("float64")
    # shap draws into matplotlib's *current* figure: without a fresh one it would draw
    # over whichever figure was made last (the run's previous plot)
    fig = plt.figure()
    with warnings.catch_warnings():  # a column missing on every row (a baseline's unused
        warnings.simplefilter("ignore", RuntimeWarning)  # feature) has no colour range
        shap.summary_plot(values, coded.astype("float64"), show=False, max_display=15)
    if plt.gcf() is not fig:  # a shap that makes its own figure: take that one
        plt.close(fig)
        fig = plt.gcf()
    fig.suptitle(title)
    fig.tight_layout()
    return fig
