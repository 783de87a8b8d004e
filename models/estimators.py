"""LightGBM models per target, with calibration and honest prediction intervals.

Three time-ordered folds feed each model: it is fitted on the earliest cases, stops
early on the next block, and is calibrated on the latest block. Calibration on later
data is what makes a probability trustworthy for the next quarter, not the last one.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

#: Prefixes of one case share its label, so the effective sample is cases, not rows:
#: large leaves and smoothed categories keep trees from memorising a few long cases.
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 2000,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 200,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.5,
    "reg_lambda": 1.0,
    "cat_smooth": 50.0,
    "cat_l2": 10.0,
    "min_data_per_group": 200,
    "max_cat_to_onehot": 8,
    "verbose": -1,
    "n_jobs": 1,  # OpenMP threads spin badly when the 2 cores are shared (40x slower seen)
}
#: L1 and quantile objectives need many small steps; fewer, larger ones keep training fast
REGRESSION_PARAMS: dict[str, Any] = {"learning_rate": 0.1, "n_estimators": 600}
EARLY_STOPPING_ROUNDS = 50


def _fit_lgbm(model: lgb.LGBMModel, X: pd.DataFrame, y: np.ndarray, X_valid: pd.DataFrame,
              y_valid: np.ndarray) -> lgb.LGBMModel:
    model.fit(X, y, eval_X=X_valid, eval_y=y_valid,
              callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)])
    return model


class WinProbabilityModel:
    """LightGBM classifier whose probabilities are calibrated on later cases.

    ``calibration``: 'isotonic' (flexible, needs a few thousand rows), 'sigmoid'
    (Platt scaling on the log-odds) or 'none'.
    """

    def __init__(self, params: dict[str, Any] | None = None, calibration: str = "isotonic",
                 seed: int = 0) -> None:
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.calibration = calibration
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_valid: pd.DataFrame, y_valid: np.ndarray,
            X_cal: pd.DataFrame, y_cal: np.ndarray) -> WinProbabilityModel:
        self.model_ = _fit_lgbm(lgb.LGBMClassifier(**self.params, random_state=self.seed),
                                X, y, X_valid, y_valid)
        raw = self.raw_proba(X_cal)
        if self.calibration == "isotonic":
            self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            self.calibrator_.fit(raw, y_cal)
        elif self.calibration == "sigmoid":
            self.calibrator_ = LogisticRegression().fit(_logit(raw)[:, None], y_cal)
        else:
            self.calibrator_ = None
        return self

    @property
    def booster(self) -> lgb.Booster:
        return self.model_.booster_

    def raw_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict_proba(X)[:, 1]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated P(win)."""
        return self.calibrate(self.raw_proba(X))

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        if self.calibrator_ is None:
            return raw
        if isinstance(self.calibrator_, IsotonicRegression):
            return self.calibrator_.predict(raw)
        return self.calibrator_.predict_proba(_logit(raw)[:, None])[:, 1]


class IntervalRegressor:
    """Point prediction (median, L1) plus a 10–90% interval with conformal correction.

    Quantile models give an interval that adapts to each case; conformalized quantile
    regression (Romano et al., 2019) then widens or narrows it by one constant fitted on
    the later calibration block, so coverage holds on new cases, not just in-sample.
    """

    def __init__(self, params: dict[str, Any] | None = None, alpha: float = 0.2,
                 seed: int = 0) -> None:
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.alpha = alpha
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_valid: pd.DataFrame, y_valid: np.ndarray,
            X_cal: pd.DataFrame, y_cal: np.ndarray) -> IntervalRegressor:
        def model(**extra: Any) -> lgb.LGBMRegressor:
            params = {**self.params, **REGRESSION_PARAMS, **extra}
            return lgb.LGBMRegressor(**params, random_state=self.seed)

        self.model_ = _fit_lgbm(model(objective="l1"), X, y, X_valid, y_valid)
        half = self.alpha / 2
        self.lower_ = _fit_lgbm(model(objective="quantile", alpha=half), X, y, X_valid, y_valid)
        self.upper_ = _fit_lgbm(model(objective="quantile", alpha=1 - half), X, y, X_valid,
                                y_valid)
        lo, hi = self.lower_.predict(X_cal), self.upper_.predict(X_cal)
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        scores = np.maximum(lo - y_cal, y_cal - hi)
        n = len(scores)
        level = min(1.0, np.ceil((n + 1) * (1 - self.alpha)) / n) if n else 1.0
        self.correction_ = float(np.quantile(scores, level)) if n else 0.0
        return self

    @property
    def booster(self) -> lgb.Booster:
        return self.model_.booster_

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict(X)

    def predict_interval(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point, lower and upper; the interval always contains the point."""
        point = self.predict(X)
        lo, hi = self.lower_.predict(X), self.upper_.predict(X)
        lo, hi = np.minimum(lo, hi) - self.correction_, np.maximum(lo, hi) + self.correction_
        return point, np.minimum(lo, point), np.maximum(hi, point)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
