"""The run's plots: the SHAP summary is its own figure, never the one drawn before it."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

from training.plots import calibration_plot, shap_summary_plot


def test_shap_summary_draws_a_fresh_figure_not_over_the_open_one() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    previous = calibration_plot(y, rng.uniform(size=200), "win probability")
    before = [ax.get_title() for ax in previous.axes]
    X = pd.DataFrame({"value": rng.normal(size=200),
                      "stage": pd.Categorical(rng.choice(["a", "b"], 200))})
    fig = shap_summary_plot(rng.normal(size=(200, 2)), X, "outcome: SHAP summary")
    try:
        assert fig is not previous
        assert [ax.get_title() for ax in previous.axes] == before  # untouched
        assert fig._suptitle.get_text() == "outcome: SHAP summary"
        assert any("SHAP value" in ax.get_xlabel() for ax in fig.axes)
        assert not any("SHAP value" in ax.get_xlabel() for ax in previous.axes)
    finally:
        plt.close(fig)
        plt.close(previous)


def test_the_logged_shap_summary_differs_from_the_plot_logged_before_it(
        trained, tmp_path: Path) -> None:
    folder = Path(mlflow.artifacts.download_artifacts(run_id=trained.run_id,
                                                      artifact_path="plots",
                                                      dst_path=str(tmp_path)))
    for target, previous in (("outcome", "auc_by_prefix"), ("payment_delay", "residuals")):
        shap_png = (folder / f"{target}_shap_summary.png").read_bytes()
        assert shap_png != (folder / f"{target}_{previous}.png").read_bytes()


def test_a_feature_missing_on_every_row_draws_without_warnings() -> None:
    """A shipped baseline's features all contribute 0, and some are never filled: the
    beeswarm must not print numpy's "All-NaN slice" to the user's terminal."""
    import warnings

    X = pd.DataFrame({"amount": np.arange(50.0), "never": np.full(50, np.nan)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fig = shap_summary_plot(np.zeros((50, 2)), X, "outcome: SHAP summary")
    plt.close(fig)
