"""Model objects on synthetic data whose truth is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.baselines import PaymentDelayBaseline
from models.bundle import TargetBundle
from models.estimators import IntervalRegressor, WinProbabilityModel
from models.metrics import expected_calibration_error


def synthetic(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "a": rng.normal(size=n), "b": rng.normal(size=n),
        "c": pd.Categorical(rng.choice(["x", "y", "z"], size=n), categories=["x", "y", "z"]),
    })
    logit = 1.2 * X["a"] - 0.8 * X["b"] + X["c"].map({"x": 0.5, "y": 0.0, "z": -0.5}).astype(float)
    p = 1 / (1 + np.exp(-logit.to_numpy()))
    return X, (rng.random(n) < p).astype(int), p


def folds(seed: int = 0) -> list[tuple[pd.DataFrame, np.ndarray]]:
    return [synthetic(n, seed + i)[:2] for i, n in enumerate((4000, 1500, 3000, 4000))]


def test_calibration_lowers_the_calibration_error() -> None:
    (X, y), (Xv, yv), (Xc, yc), (Xt, yt) = folds()
    # weighting positives 4x makes the raw probabilities too high: calibration must fix it
    skewed = {"scale_pos_weight": 4.0, "n_estimators": 300}
    raw = WinProbabilityModel(skewed, calibration="none", base=None).fit(X, y, Xv, yv, Xc, yc)
    calibrated = WinProbabilityModel(skewed, calibration="isotonic", base=None).fit(
        X, y, Xv, yv, Xc, yc)
    ece_raw = expected_calibration_error(yt, raw.predict_proba(Xt))
    ece_cal = expected_calibration_error(yt, calibrated.predict_proba(Xt))
    assert ece_raw > 0.1
    assert ece_cal < ece_raw / 3
    assert calibrated.calibration_used_ != "none"


def test_win_model_explanations_add_up_with_the_logistic_base() -> None:
    (X, y), (Xv, yv), (Xc, yc), (Xt, _) = folds(10)
    model = WinProbabilityModel({"n_estimators": 200}).fit(X, y, Xv, yv, Xc, yc)
    bundle = TargetBundle.__new__(TargetBundle)
    bundle.model = model
    values = bundle.contributions(Xt)
    np.testing.assert_allclose(values.sum(axis=1), model.raw_margin(Xt), atol=1e-8)
    # the strongest true effect carries the largest mean absolute contribution
    mean_abs = np.abs(values[:, :-1]).mean(axis=0)
    assert list(Xt.columns)[int(np.argmax(mean_abs))] == "a"


def test_intervals_cover_about_eighty_percent_and_boost_from_the_base() -> None:
    rng = np.random.default_rng(3)

    def data(n: int) -> tuple[pd.DataFrame, np.ndarray]:
        history = rng.normal(5, 10, n)
        X = pd.DataFrame({"account_mean_payment_delay_days": history,
                          "payment_terms_days": rng.choice([30.0, 60.0], n),
                          "noise": rng.normal(size=n)})
        return X, history + 0.1 * X["payment_terms_days"].to_numpy() + rng.normal(0, 3, n)

    (X, y), (Xv, yv), (Xc, yc), (Xt, yt) = (data(3000), data(1000), data(2000), data(4000))
    model = IntervalRegressor({"n_estimators": 300}, alpha=0.2,
                              base=PaymentDelayBaseline()).fit(X, y, Xv, yv, Xc, yc)
    point, lower, upper = model.predict_interval(Xt)
    coverage = np.mean((yt >= lower) & (yt <= upper))
    assert 0.75 <= coverage <= 0.86
    assert np.mean(np.abs(point - yt)) < 3.0  # noise sd 3: MAE near 2.4 when right
    bundle = TargetBundle.__new__(TargetBundle)
    bundle.model = model
    np.testing.assert_allclose(bundle.contributions(Xt).sum(axis=1), point, atol=1e-8)


def test_unknown_calibration_is_refused() -> None:
    (X, y), (Xv, yv), (Xc, yc), _ = folds()
    with pytest.raises(ValueError, match="calibration"):
        WinProbabilityModel({"n_estimators": 5}, calibration="magic").fit(X, y, Xv, yv, Xc, yc)
